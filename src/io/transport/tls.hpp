// The TLS transport: OpenSSL over a non-blocking TCP socket, behind the same seam as TCP, so a
// session never knows it is encrypted.
//
// Why not asio::ssl::stream's synchronous read_some/write_some: on a non-blocking socket a
// write that would block loses the ciphertext OpenSSL already produced. Instead the SSL object
// reads straight from the socket (a socket BIO: SSL_read says "want read" exactly when a plain
// read would say would_block) and writes into a BIO of ours that appends to a string and never
// blocks; the transport sends that ciphertext itself and takes no new plaintext while some of it is still unsent. A
// write therefore never has to be "retried with the same arguments", and the ciphertext held
// per client is bounded by one try_write's worth (max_plaintext_per_write plus record overhead).
//
// The configuration (certificate, key, client CA) is an asio::ssl::context built by
// tls_server_config; reloading makes a new one for the handshakes that follow, and the
// connections already up keep theirs.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "framecast/io/server.hpp"
#include "framecast/io/transport.hpp"
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

typedef struct ssl_st SSL;
typedef struct bio_st BIO;
typedef struct x509_st X509;

namespace framecast::io {

// Builds the server's TLS context: TLS 1.2 at least (1.3 preferred by OpenSSL), no
// renegotiation, no session tickets (no resumption to keep state for), buffers released while
// a connection is idle. Throws std::runtime_error naming the file and OpenSSL's reason.
std::shared_ptr<asio::ssl::context> make_tls_server_context(const server_options::tls_options& files);

class tls_transport final : public transport {
public:
    // Plaintext taken per try_write; the ciphertext of it is what may wait, unsent, per client.
    static constexpr std::size_t max_plaintext_per_write = 64 * 1024;
    // The most plaintext in one TLS record: buffers smaller than this are gathered up to it.
    static constexpr std::size_t record_bytes = 16 * 1024;

    // The server's side of a connection.
    tls_transport(asio::ip::tcp::socket socket, std::shared_ptr<asio::ssl::context> ctx);
    // The client's side: `server_name` is sent (SNI, unless an IP address) and, when the
    // context verifies peers, checked against the certificate (DNS name or IP address).
    tls_transport(asio::ip::tcp::socket socket, std::shared_ptr<asio::ssl::context> ctx,
                  const std::string& server_name);
    ~tls_transport() override;

    // Runs the server side of the handshake, at most until `deadline`. Returns {} or the
    // error, with `why` a sentence for the log (e.g. "not a TLS client (plaintext on a TLS
    // port?): wrong version number").
    asio::awaitable<error_code> handshake(std::chrono::steady_clock::duration deadline,
                                          std::string& why);
    // The verified client certificate's subject (mutual TLS), or "" without one.
    std::string peer_subject() const;
    // The verified client certificate (owned by the connection), or null without one.
    X509* peer_certificate() const override;
    // Ciphertext is still waiting to be sent (after try_write or shutdown_send took plaintext
    // while the socket was full); send_pending() sends what the socket takes now.
    bool output_pending() const noexcept override { return !out_.empty(); }
    bool send_pending(error_code& ec) { return flush(ec); }

    std::size_t try_read(std::span<char> buf, error_code& ec) override;
    std::size_t try_write(std::span<const asio::const_buffer> bufs, error_code& ec) override;
    asio::awaitable<error_code> wait_readable() override;
    // As wait_readable(), without a coroutine (a waiting session holds none).
    void on_readable(std::function<void(error_code)> fn) override;
    asio::awaitable<error_code> wait_writable() override;
    void shutdown_send() noexcept override;
    void close() noexcept override;
    std::string peer_name() const override;
    int native_handle() const noexcept override {
        return static_cast<int>(const_cast<asio::ip::tcp::socket&>(socket_).native_handle());
    }
    asio::any_io_executor get_executor() override { return socket_.get_executor(); }

private:
    // Sends pending ciphertext; false with ec = would_block when some is left.
    bool flush(error_code& ec);
    error_code ssl_error(int ret);
    void attach();

    asio::ip::tcp::socket socket_;
    std::shared_ptr<asio::ssl::context> ctx_;  // keeps the SSL_CTX alive across a reload
    SSL* ssl_ = nullptr;
    std::string out_;  // ciphertext OpenSSL wrote (through our BIO), not yet sent
    std::size_t out_sent_ = 0;
    bool shut_pending_ = false;  // shutdown_send() found the socket full: FIN after out_
};

}  // namespace framecast::io
