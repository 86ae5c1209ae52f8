// The client side of the WebSocket transport: `framecast connect/chat/send ws://HOST:PORT/`.
// The clients are written against a byte stream (tcp::socket); over WebSocket they get one
// end of a local socket pair, and a bridge on the same io_context turns each WebSocket message
// into one framecast frame and each frame they write into one WebSocket message (text when
// valid UTF-8, else binary). So the same client code, decoder and limits serve both transports.
#pragma once

#include <cstdint>
#include <string>

#include "framecast/codec.hpp"
#include "framecast/io/client.hpp"
#include "framecast/io/tls_client.hpp"

namespace framecast::io {

// Connects to host:port, performs the WebSocket handshake for `path` (all within `timeout`),
// and makes `socket` the client's end of the bridge. On failure returns the error and sets
// `what` to a sentence naming the step ("websocket handshake with 127.0.0.1:8080 failed: ...").
// The bridge closes the WebSocket (1000) when the client shuts its sending side or closes, and
// shuts the client's receiving side (end of stream) when the server closes; a close code other
// than 1000/1001 is logged with its reason. With `tls.enabled` (wss://) the WebSocket runs
// over a TLS connection made as async_connect_tls() makes one (verification, errors and
// sentences as there): the TLS client's bridge carries the WebSocket bridge's bytes.
asio::awaitable<error_code> async_connect_ws(tcp::socket& socket, std::string host,
                                             std::uint16_t port, std::string path,
                                             duration timeout, std::string& what,
                                             codec_options codec,
                                             const tls_client_options& tls = {});

}  // namespace framecast::io
