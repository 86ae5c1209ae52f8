// Connecting a client to its target over TCP, or over WebSocket for a ws:// URL.
#pragma once

#include <string>

#include "cli.hpp"
#include "framecast/codec.hpp"
#include "framecast/io/client.hpp"

namespace framecast::app {

// io::async_connect for HOST:PORT, io::async_connect_ws for ws:// (with `codec` framing the
// bridged messages), io::async_connect_tls with --tls; the same errors and sentences in
// `what`. With a token (--token, FRAMECAST_TOKEN) it is sent as the first frame and the
// server's answer read (exactly that frame): a refusal is errc::auth_refused with the server's
// reason in `what`.
asio::awaitable<error_code> connect_to(io::client_stream& socket, const endpoint& target,
                                           io::duration timeout, std::string& what,
                                           const codec_options& codec);

// The exit code of a connect_to() failure: TLS (10) and auth (11) failures have their own,
// everything else is "connect failed" (3).
exit_code connect_exit_code(error_code ec) noexcept;

}  // namespace framecast::app
