// --offset-file (connect --resume, sub --resume): the positions are written to FILE.tmp and
// renamed over FILE, so a crash leaves the old file or the new one, never half of one.
#pragma once

#include <cstdio>
#include <fstream>
#include <string>

#include <spdlog/spdlog.h>

namespace framecast::app {

// Replaces `path` with `text`; false (and a logged error naming the file) when it could not.
inline bool replace_offset_file(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << text;
        if (!out.flush()) {
            spdlog::error("--offset-file: cannot write {}", tmp);
            return false;
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        spdlog::error("--offset-file: cannot rename {} to {}", tmp, path);
        return false;
    }
    return true;
}

}  // namespace framecast::app
