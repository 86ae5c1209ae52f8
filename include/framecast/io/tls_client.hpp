// The client side of TLS: `framecast connect/send/chat --tls`. The clients are written against
// a client_stream, which then reads and writes through the TLS connection itself. The
// WebSocket client (wss://) is written against a socket: it gets one end of a local socket
// pair, and a bridge on the same io_context moves bytes between it and the TLS connection.
#pragma once

#include <cstdint>
#include <string>

#include "framecast/io/client.hpp"

namespace framecast::io {

struct tls_client_options {
    bool enabled = false;
    std::string ca_file;      // trust these CAs; empty: the system's (/etc/ssl/certs)
    std::string cert_file;    // mutual TLS: the client's certificate chain (PEM)
    std::string key_file;     // and its key
    std::string server_name;  // checked against the certificate; empty: the host connected to
    bool insecure = false;    // no verification at all (explicit choice only)
};

// Connects to host:port and does the TLS handshake (all within `timeout`), verifying the
// server's certificate chain and name unless `insecure`; then makes `socket` the client's end
// of the bridge. On failure returns the error (errc::tls_verify_failed: the certificate was not
// verified; errc::tls_handshake_failed: anything else in TLS) and sets `what` to a sentence
// naming the reason ("TLS with 127.0.0.1:8443: server certificate not verified: certificate has
// expired"). Then `stream` reads and writes through it; its shutdown_send() sends close_notify.
asio::awaitable<error_code> async_connect_tls(client_stream& stream, std::string host,
                                              std::uint16_t port, const tls_client_options& tls,
                                              duration timeout, std::string& what);
// The same, making `socket` the client's end of a bridge (the WebSocket client over TLS). The
// bridge sends close_notify when the client shuts its sending side, and shuts the client's
// receiving side (end of stream) when the server closes.
asio::awaitable<error_code> async_connect_tls(tcp::socket& socket, std::string host,
                                              std::uint16_t port, const tls_client_options& tls,
                                              duration timeout, std::string& what);

}  // namespace framecast::io
