// Connecting a client to its target over TCP, or over WebSocket for a ws:// URL.
#pragma once

#include <string>

#include "cli.hpp"
#include "framecast/codec.hpp"
#include "framecast/io/client.hpp"

namespace framecast::app {

// io::async_connect for HOST:PORT, io::async_connect_ws for ws:// (with `codec` framing the
// bridged messages); the same errors and sentences in `what`.
asio::awaitable<error_code> connect_to(io::tcp::socket& socket, const endpoint& target,
                                           io::duration timeout, std::string& what,
                                           const codec_options& codec);

}  // namespace framecast::app
