#include "framecast/io/tls_client.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <stdexcept>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/write.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include "framecast/error.hpp"
#include "bridge_pair.hpp"
#include "framecast/io/endpoint.hpp"
#include "transport/tls.hpp"

namespace framecast::io {

using local_socket = asio::local::stream_protocol::socket;

namespace {

std::string last_reason() {
    unsigned long err = 0, last = 0;
    while ((err = ERR_get_error()) != 0) last = err;
    const char* r = last ? ERR_reason_error_string(last) : nullptr;
    return r ? r : "unknown error";
}

std::shared_ptr<asio::ssl::context> client_context(const tls_client_options& o) {
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    SSL_CTX* h = ctx->native_handle();
    SSL_CTX_set_min_proto_version(h, TLS1_2_VERSION);
    SSL_CTX_set_options(h, SSL_OP_IGNORE_UNEXPECTED_EOF);
    // Read-ahead: one recv takes up to 256 KiB (many records) instead of a 5-byte header and
    // then the record; 64 KiB took 32 KiB per read on loopback, 3.7x the reads of 256 KiB.
    // The readers (client_stream's, the wss bridge's) read until "want read" before they
    // wait, so bytes read ahead are never left waiting for the socket.
    SSL_CTX_set_read_ahead(h, 1);
    SSL_CTX_set_default_read_buffer_len(h, 256 * 1024);
    ERR_clear_error();
    if (!o.ca_file.empty()) {
        if (SSL_CTX_load_verify_locations(h, o.ca_file.c_str(), nullptr) != 1) {
            throw std::runtime_error("cannot load the CA file '" + o.ca_file + "': " + last_reason());
        }
    } else {
        SSL_CTX_set_default_verify_paths(h);
    }
    if (!o.cert_file.empty()) {
        if (SSL_CTX_use_certificate_chain_file(h, o.cert_file.c_str()) != 1) {
            throw std::runtime_error("cannot load the client certificate '" + o.cert_file +
                                     "': " + last_reason());
        }
        const std::string& key = o.key_file.empty() ? o.cert_file : o.key_file;
        if (SSL_CTX_use_PrivateKey_file(h, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(h) != 1) {
            throw std::runtime_error("cannot use the client key '" + key + "': " + last_reason());
        }
    }
    SSL_CTX_set_verify(h, o.insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nullptr);
    return ctx;
}

struct bridge {
    bridge(std::unique_ptr<tls_transport> t, local_socket l) : tls(std::move(t)), local(std::move(l)) {}
    std::unique_ptr<tls_transport> tls;
    local_socket local;
};

// TLS → the client's socket. Reads every record already here (up to 64 KiB) before one
// write to the client's socket: a record is at most 16 KiB, often much less.
asio::awaitable<void> downstream(std::shared_ptr<bridge> b) {
    std::array<char, 64 * 1024> buf;
    for (;;) {
        error_code ec;
        std::size_t filled = 0;
        while (filled < buf.size()) {
            filled += b->tls->try_read({buf.data() + filled, buf.size() - filled}, ec);
            if (ec) break;
        }
        if (filled > 0) {
            auto [wec, wn] = co_await asio::async_write(b->local, asio::buffer(buf.data(), filled),
                                                        use_nothrow);
            if (wec) break;
        }
        if (ec == asio::error::would_block) {
            if (filled > 0) continue;  // written; read again before waiting
            auto wec = co_await b->tls->wait_readable();
            if (wec) break;
            continue;
        }
        if (ec) {
            if (ec != asio::error::eof) spdlog::debug("TLS read: {}", ec.message());
            break;
        }
    }
    error_code ignored;
    b->local.shutdown(local_socket::shutdown_send, ignored);
}

// Sends the ciphertext the TLS transport holds (it takes all the plaintext it is given and keeps
// what the socket refuses); false when the connection failed.
// One co_return at the end: GCC 12 miscompiles early returns in small coroutines.
asio::awaitable<bool> send_held(bridge& b) {
    bool ok = true;
    while (ok && b.tls->output_pending()) {
        error_code ec;
        b.tls->send_pending(ec);
        if (!ec) break;
        if (ec != asio::error::would_block) {
            ok = false;
        } else {
            const error_code waited = co_await b.tls->wait_writable();
            ok = !waited;
        }
    }
    co_return ok;
}

// The client's socket → TLS; its end of stream becomes close_notify.
asio::awaitable<void> upstream(std::shared_ptr<bridge> b) {
    std::vector<char> buf(64 * 1024);
    for (;;) {
        auto [ec, n] = co_await b->local.async_read_some(asio::buffer(buf), use_nothrow);
        if (ec) break;
        std::size_t done = 0;
        while (done < n) {
            error_code wec;
            const asio::const_buffer out(buf.data() + done, n - done);
            done += b->tls->try_write({&out, 1}, wec);
            if (wec == asio::error::would_block) {
                const error_code waited = co_await b->tls->wait_writable();
                if (waited) co_return;
            } else if (wec) {
                co_return;
            }
        }
        // Before the next read: the last message must not wait for more input to be sent.
        const bool sent = co_await send_held(*b);
        if (!sent) co_return;
    }
    b->tls->shutdown_send();
    co_await send_held(*b);
}

// Connects and does the handshake: the TLS transport, or null (with `what` and `ec` set).
// Single exits (GCC 12, above).
asio::awaitable<std::unique_ptr<tls_transport>> connect_tls(std::string host, std::uint16_t port,
                                                            const tls_client_options& tls,
                                                            duration timeout, std::string& what,
                                                            error_code& ec) {
    auto ex = co_await asio::this_coro::executor;
    const auto started = std::chrono::steady_clock::now();
    std::shared_ptr<asio::ssl::context> ctx;
    std::unique_ptr<tls_transport> t;
    try {
        ctx = client_context(tls);
    } catch (const std::runtime_error& e) {
        what = e.what();
        ec = make_error_code(errc::tls_handshake_failed);
    }
    tcp::socket raw(ex);
    if (ctx) ec = co_await async_connect(raw, host, port, timeout, what);
    if (ctx && !ec) {
        const std::string name = format_host_port(host.empty() ? "localhost" : host, port);
        const std::string server_name =
            tls.server_name.empty() ? (host.empty() ? "localhost" : host) : tls.server_name;
        t = std::make_unique<tls_transport>(std::move(raw), ctx, server_name);
        std::string why;
        const auto left = std::max<duration>(
            timeout - (std::chrono::steady_clock::now() - started), std::chrono::milliseconds(1));
        ec = co_await t->handshake(left, why);
        if (ec) {
            what = "TLS with " + name + ": " + why;
            t.reset();
        }
    }
    co_return t;
}

}  // namespace

asio::awaitable<error_code> async_connect_tls(client_stream& stream, std::string host,
                                              std::uint16_t port, const tls_client_options& tls,
                                              duration timeout, std::string& what) {
    error_code ec;
    auto t = co_await connect_tls(std::move(host), port, tls, timeout, what, ec);
    if (t) stream.use(std::move(t));
    co_return ec;
}

asio::awaitable<error_code> async_connect_tls(tcp::socket& socket, std::string host,
                                              std::uint16_t port, const tls_client_options& tls,
                                              duration timeout, std::string& what) {
    error_code ec;
    auto t = co_await connect_tls(std::move(host), port, tls, timeout, what, ec);
    if (t) {
        local_socket local(socket.get_executor());
        ec = make_bridge_pair(socket, local, "TLS", what);
        if (!ec) start_tls_bridge(std::move(t), std::move(local));
    }
    co_return ec;
}

void start_tls_bridge(std::unique_ptr<tls_transport> t, local_socket local) {
    auto ex = t->get_executor();
    auto b = std::make_shared<bridge>(std::move(t), std::move(local));
    asio::co_spawn(ex, downstream(b), asio::detached);
    asio::co_spawn(ex, upstream(b), asio::detached);
}

}  // namespace framecast::io
