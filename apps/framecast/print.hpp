// serve --print: what clients send, on standard output in one of connect's --output formats
// (a listening peer like `nc -l` or `websocat -s`, that frames).
#pragma once

#include <functional>
#include <string>

#include "framecast/codec.hpp"
#include "framecast/io/relay_unit.hpp"

namespace framecast::app {

// A node sink that prints each unit's messages as `format` ("lines", "raw", "framed", "json")
// and flushes after each unit (one client read), so what arrives shows up at once.
std::function<void(const io::relay_unit&)> make_printer(const std::string& format,
                                                        const codec_options& codec);

}  // namespace framecast::app
