#include "transport/tls.hpp"

#include <cerrno>
#include <array>
#include <cstring>
#include <stdexcept>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "framecast/error.hpp"
#include "framecast/io/endpoint.hpp"

namespace framecast::io {

using asio::ip::tcp;

namespace {

// OpenSSL's reason for the last error on this thread, as one line.
std::string openssl_reason(unsigned long err) {
    if (err == 0) return "unknown error";
    const char* r = ERR_reason_error_string(err);
    return r ? r : "error " + std::to_string(err);
}

std::string last_openssl_reason() {
    unsigned long err = 0, last = 0;
    while ((err = ERR_get_error()) != 0) last = err;
    return openssl_reason(last);
}

// The BIO OpenSSL writes ciphertext into: appends to the transport's string. It never blocks,
// so SSL_write always takes all it is given (the bound is how much the transport gives it).
int out_write(BIO* b, const char* data, size_t n, size_t* written) {
    static_cast<std::string*>(BIO_get_data(b))->append(data, n);
    *written = n;
    return 1;
}

long out_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

int out_create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
}

BIO_METHOD* out_method() {
    static BIO_METHOD* method = [] {
        BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "framecast out");
        BIO_meth_set_write_ex(m, out_write);
        BIO_meth_set_ctrl(m, out_ctrl);
        BIO_meth_set_create(m, out_create);
        return m;
    }();
    return method;
}

void check(bool ok, const std::string& what) {
    if (!ok) throw std::runtime_error(what + ": " + last_openssl_reason());
}

}  // namespace

std::shared_ptr<asio::ssl::context> make_tls_server_context(const server_options::tls_options& files) {
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    SSL_CTX* h = ctx->native_handle();
    SSL_CTX_set_min_proto_version(h, TLS1_2_VERSION);
    SSL_CTX_set_options(h, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(h, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_num_tickets(h, 0);
    SSL_CTX_set_session_cache_mode(h, SSL_SESS_CACHE_OFF);
    ERR_clear_error();
    check(SSL_CTX_use_certificate_chain_file(h, files.cert.c_str()) == 1,
          "cannot load the TLS certificate '" + files.cert + "'");
    const std::string mismatch =
        "the TLS key '" + files.key + "' does not match the certificate '" + files.cert + "'";
    if (SSL_CTX_use_PrivateKey_file(h, files.key.c_str(), SSL_FILETYPE_PEM) != 1) {
        const bool wrong_key = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        check(false, wrong_key ? mismatch : "cannot load the TLS key '" + files.key + "'");
    }
    check(SSL_CTX_check_private_key(h) == 1, mismatch);
    if (!files.client_ca.empty()) {
        check(SSL_CTX_load_verify_locations(h, files.client_ca.c_str(), nullptr) == 1,
              "cannot load the client CA '" + files.client_ca + "'");
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca.c_str());
        check(names != nullptr, "cannot read CA names from '" + files.client_ca + "'");
        SSL_CTX_set_client_CA_list(h, names);
        SSL_CTX_set_verify(h, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
    return ctx;
}

tls_transport::tls_transport(tcp::socket socket, std::shared_ptr<asio::ssl::context> ctx)
    : socket_(std::move(socket)), ctx_(std::move(ctx)) {
    attach();
    SSL_set_accept_state(ssl_);
}

tls_transport::tls_transport(tcp::socket socket, std::shared_ptr<asio::ssl::context> ctx,
                             const std::string& server_name)
    : socket_(std::move(socket)), ctx_(std::move(ctx)) {
    attach();
    error_code ec;
    const auto ip = asio::ip::make_address(server_name, ec);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    if (ec) {
        SSL_set_tlsext_host_name(ssl_, server_name.c_str());
        SSL_set1_host(ssl_, server_name.c_str());
    } else {
        X509_VERIFY_PARAM_set1_ip_asc(param, ip.to_string().c_str());
    }
    SSL_set_connect_state(ssl_);
}

void tls_transport::attach() {
    error_code ec;
    socket_.non_blocking(true, ec);
    socket_.set_option(tcp::no_delay(true), ec);
    ssl_ = SSL_new(ctx_->native_handle());
    if (!ssl_) throw std::bad_alloc();
    BIO* in = BIO_new_socket(static_cast<int>(socket_.native_handle()), BIO_NOCLOSE);
    BIO* out = BIO_new(out_method());
    if (!in || !out) {
        BIO_free(in);
        BIO_free(out);
        SSL_free(ssl_);
        throw std::bad_alloc();
    }
    BIO_set_data(out, &out_);
    SSL_set_bio(ssl_, in, out);
}

tls_transport::~tls_transport() { SSL_free(ssl_); }

error_code tls_transport::ssl_error(int ret) {
    switch (SSL_get_error(ssl_, ret)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return asio::error::would_block;
    case SSL_ERROR_ZERO_RETURN:
        return asio::error::eof;
    case SSL_ERROR_SYSCALL: {
        const int e = errno;
        ERR_clear_error();
        if (e == 0) return asio::error::eof;
        if (e == EAGAIN || e == EWOULDBLOCK) return asio::error::would_block;
        return error_code(e, asio::error::get_system_category());
    }
    default: {
        unsigned long err = 0, last = 0;
        while ((err = ERR_get_error()) != 0) last = err;
        return error_code(static_cast<int>(last), asio::error::get_ssl_category());
    }
    }
}

bool tls_transport::flush(error_code& ec) {
    while (out_sent_ < out_.size()) {
        std::size_t n = socket_.write_some(
            asio::buffer(out_.data() + out_sent_, out_.size() - out_sent_), ec);
        if (ec) {
            if (ec == asio::error::try_again) ec = asio::error::would_block;
            return false;
        }
        out_sent_ += n;
    }
    out_.clear();
    out_sent_ = 0;
    if (shut_pending_) {
        shut_pending_ = false;
        error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_send, ignored);
    }
    // An idle client keeps no ciphertext buffer: a large write's buffer is given back.
    if (out_.capacity() > 2 * max_plaintext_per_write) out_.shrink_to_fit();
    return true;
}

std::size_t tls_transport::try_read(std::span<char> buf, error_code& ec) {
    ec = {};
    std::size_t n = 0;
    ERR_clear_error();
    const int ret = SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
    if (ret != 1) ec = ssl_error(ret);
    // A read may produce output (an alert, a key update): send it, or leave it for the writer.
    if (!out_.empty()) {
        error_code wec;
        flush(wec);
    }
    return ret == 1 ? n : 0;
}

std::size_t tls_transport::try_write(std::span<const asio::const_buffer> bufs, error_code& ec) {
    ec = {};
    if (!flush(ec)) return 0;
    std::size_t taken = 0;
    // Small buffers (a relay of 100 B messages is one buffer per message) are gathered into
    // records of up to record_bytes: one SSL_write, one record header and one AEAD pass per
    // record instead of per message, and a reader gets full records.
    // One scratch per thread: SSL_write has encrypted it into out_ before try_write returns,
    // so no connection holds it (16 KiB each for 10,000 idle clients would add up).
    thread_local std::array<char, record_bytes> stage;
    std::size_t staged = 0;
    auto write = [&](const char* data, std::size_t len) {
        std::size_t n = 0;
        ERR_clear_error();
        const int ret = SSL_write_ex(ssl_, data, len, &n);
        if (ret != 1) {
            ec = ssl_error(ret);
            return false;
        }
        taken += n;
        return true;
    };
    auto flush_staged = [&] {
        const bool ok = staged == 0 || write(stage.data(), staged);
        staged = 0;
        return ok;
    };
    for (const auto& b : bufs) {
        const std::size_t len = std::min(b.size(), max_plaintext_per_write - taken - staged);
        if (len == 0) break;
        const char* data = static_cast<const char*>(b.data());
        if (len >= record_bytes) {
            if (!flush_staged() || !write(data, len)) return taken;
            continue;
        }
        if (staged + len > record_bytes && !flush_staged()) return taken;
        std::memcpy(stage.data() + staged, data, len);
        staged += len;
    }
    if (!flush_staged()) return taken;
    // The plaintext is taken whatever the socket does now: its ciphertext waits in out_, and
    // the next try_write sends that before taking more.
    error_code fec;
    if (!flush(fec) && fec != asio::error::would_block) ec = fec;
    return taken;
}

void tls_transport::on_readable(std::function<void(error_code)> fn) {
    if (SSL_pending(ssl_) > 0) {
        asio::post(socket_.get_executor(), [fn = std::move(fn)] { fn(error_code{}); });
        return;
    }
    socket_.async_wait(tcp::socket::wait_read, std::move(fn));
}

asio::awaitable<error_code> tls_transport::wait_readable() {
    if (SSL_pending(ssl_) > 0) co_return error_code{};
    auto [ec] = co_await socket_.async_wait(tcp::socket::wait_read, use_nothrow);
    co_return ec;
}

asio::awaitable<error_code> tls_transport::wait_writable() {
    auto [ec] = co_await socket_.async_wait(tcp::socket::wait_write, use_nothrow);
    co_return ec;
}

asio::awaitable<error_code> tls_transport::handshake(std::chrono::steady_clock::duration deadline,
                                                     std::string& why) {
    using namespace asio::experimental::awaitable_operators;
    // Each wait races the deadline (||: the loser is cancelled and finished before the race
    // returns, so no handler outlives the handshake or cancels a wait of the connection's).
    asio::steady_timer timer(socket_.get_executor());
    timer.expires_after(deadline);
    error_code ec;
    for (;;) {
        ERR_clear_error();
        const int ret = SSL_do_handshake(ssl_);
        const int kind = ret == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, ret);
        if (ret != 1 && kind != SSL_ERROR_WANT_READ && kind != SSL_ERROR_WANT_WRITE) {
            const unsigned long err = ERR_peek_last_error();
            ec = ssl_error(ret);
            const int reason = ERR_GET_REASON(err);
            const bool server = SSL_is_server(ssl_) == 1;
            if (ec == asio::error::eof) {
                why = server ? "closed during the TLS handshake"
                             : "the server closed the connection during the TLS handshake (a "
                               "plaintext server?)";
                if (!server) ec = error_code(make_error_code(errc::tls_handshake_failed));
            } else if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_HTTP_REQUEST ||
                       reason == SSL_R_UNKNOWN_PROTOCOL || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
                       reason == SSL_R_RECORD_LENGTH_MISMATCH) {
                why = server ? "not a TLS client (plaintext on a TLS port?): "
                             : "not a TLS server (a plaintext port?): ";
                why += openssl_reason(err);
                ec = error_code(make_error_code(errc::tls_handshake_failed));
            } else if (const long v = SSL_get_verify_result(ssl_); v != X509_V_OK) {
                why = std::string(server ? "client certificate refused: "
                                         : "server certificate not verified: ") +
                      X509_verify_cert_error_string(v);
                ec = error_code(make_error_code(errc::tls_verify_failed));
            } else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
                why = "client certificate required (--tls-client-ca) but none was sent";
                ec = error_code(make_error_code(errc::tls_handshake_failed));
            } else {
                why = "TLS handshake failed: " + (err ? openssl_reason(err) : ec.message());
                if (err) ec = error_code(make_error_code(errc::tls_handshake_failed));
            }
            break;
        }
        error_code fec;
        const bool flushed = flush(fec);
        if (!flushed && fec != asio::error::would_block) {
            ec = fec;
            why = "TLS handshake failed: " + fec.message();
            break;
        }
        if (ret == 1 && flushed) break;
        auto wait = !flushed ? tcp::socket::wait_write : tcp::socket::wait_read;
        const auto waited = co_await (socket_.async_wait(wait, use_nothrow) ||
                                      timer.async_wait(use_nothrow));
        const bool timed_out = waited.index() == 1;
        const error_code wec = timed_out ? error_code{} : std::get<0>(std::get<0>(waited));
        if (timed_out) {
            ec = asio::error::timed_out;
            why = SSL_is_server(ssl_) == 1
                      ? "no TLS handshake within the deadline (a plaintext client on a TLS port?)"
                      : "the TLS handshake did not finish in time (a plaintext server?)";
            break;
        }
        if (wec) {
            ec = wec;
            why = "TLS handshake failed: " + wec.message();
            break;
        }
    }
    co_return ec;
}

std::string tls_transport::peer_subject() const {
    X509* cert = SSL_get0_peer_certificate(ssl_);
    if (!cert) return {};
    char buf[256];
    X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
    return buf;
}

X509* tls_transport::peer_certificate() const { return SSL_get0_peer_certificate(ssl_); }

void tls_transport::shutdown_send() noexcept {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // close_notify, into out_
    // The FIN goes after the ciphertext: now, or from the flush that sends the last of it.
    shut_pending_ = true;
    error_code ec;
    flush(ec);
}

void tls_transport::close() noexcept {
    error_code ec;
    socket_.close(ec);
}

std::string tls_transport::peer_name() const {
    error_code ec;
    auto peer = socket_.remote_endpoint(ec);
    return ec ? "(unknown peer)" : format_endpoint(peer);
}

}  // namespace framecast::io
