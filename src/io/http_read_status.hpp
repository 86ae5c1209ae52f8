// What a failed read of an HTTP request deserves, for the two HTTP listeners (the metrics
// endpoint, http_server.cpp, and the WebSocket gateway's upgrade, ws/gateway.cpp): a status
// to answer before closing (431 header too large, 413 a body, 400 malformed), or nothing when
// the peer went away, the deadline passed or the server is stopping.
#pragma once

#include <optional>

#include "framecast/io/asio.hpp"

namespace framecast::io {

std::optional<unsigned> http_read_status(const error_code& ec);

}  // namespace framecast::io
