// The live page's files (web/), embedded in the binary at build time by cmake/embed_web.cmake:
// no build step of their own, no CDN, nothing read from disk at run time.
#pragma once

#include <string_view>

namespace framecast::io {

struct ws_asset {
    std::string_view path;          // "/", "/app.js", "/framecast.js"
    std::string_view content_type;
    std::string_view body;
};

// The file served at `path`, or null.
const ws_asset* find_ws_asset(std::string_view path) noexcept;

}  // namespace framecast::io
