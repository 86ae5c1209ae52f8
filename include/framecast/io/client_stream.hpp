// What a client reads and writes: a TCP connection, TLS over one, or the local end of the
// WebSocket bridge. The commands and the reader/writer loops (client.hpp) are written against
// this one type and never ask which it is.
//
// TLS is the server's own TLS transport (OpenSSL over the non-blocking socket) used from the
// client's side: plaintext goes straight from the decoder's buffers into SSL_write and out of
// SSL_read, with no bridge in between (docs/bench.md, "TLS without the client's bridge").
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <tuple>

#include "framecast/io/asio.hpp"
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace framecast::io {

class transport;

class client_stream {
public:
    explicit client_stream(asio::any_io_executor ex);
    explicit client_stream(asio::ip::tcp::socket socket);
    ~client_stream();
    client_stream(const client_stream&) = delete;
    client_stream& operator=(const client_stream&) = delete;

    // The plain socket, for connecting it (async_connect, async_connect_ws): unused once TLS
    // runs over it.
    asio::ip::tcp::socket& socket() noexcept { return socket_; }
    // From now on the bytes go through `t` (async_connect_tls, after its handshake over the
    // socket it took from socket()).
    void use(std::unique_ptr<transport> t);
    bool encrypted() const noexcept { return secure_ != nullptr; }
    asio::any_io_executor get_executor();
    // The TCP socket under it (e.g. for SIOCOUTQ), -1 when closed.
    int native_handle();

    // Non-blocking read: would_block when nothing is there, eof at the end of the stream.
    std::size_t try_read(std::span<char> buf, error_code& ec);
    // Completes when try_read() may find bytes (read until would_block before waiting).
    asio::awaitable<error_code> wait_readable();
    // Reads some bytes (at least one), waiting for them.
    asio::awaitable<std::tuple<error_code, std::size_t>> read_some(asio::mutable_buffer buf);
    // Reads exactly buf.size() bytes (fewer only on an error or the end of the stream).
    asio::awaitable<std::tuple<error_code, std::size_t>> read_exactly(asio::mutable_buffer buf);
    // Writes all of `buf`; with TLS, also until its ciphertext is all in the socket.
    asio::awaitable<std::tuple<error_code, std::size_t>> write(asio::const_buffer buf);
    // End of stream after what was written (TLS: close_notify, then FIN); reading goes on.
    asio::awaitable<error_code> shutdown_send();
    // The same without waiting: what the socket takes now (before a close()).
    void shutdown_send_now() noexcept;
    // Closes now (TLS: after a close_notify, unless shutdown_send gave one); waits complete
    // with operation_aborted. The destructor closes too.
    void close() noexcept;

private:
    asio::awaitable<error_code> send_pending();

    asio::ip::tcp::socket socket_;
    std::unique_ptr<transport> secure_;
    bool shut_ = false;  // TLS: close_notify given (shutdown_send)
};

}  // namespace framecast::io
