#include "framecast/io/client_stream.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "framecast/io/transport.hpp"

namespace framecast::io {

using tcp = asio::ip::tcp;

client_stream::client_stream(asio::any_io_executor ex) : socket_(std::move(ex)) {}

client_stream::client_stream(tcp::socket socket) : socket_(std::move(socket)) {}

// A TLS stream that was not shut down says close_notify on its way out (best effort: what
// the socket takes now), as a clean end for the server and for proxies that log truncation.
client_stream::~client_stream() { close(); }

void client_stream::use(std::unique_ptr<transport> t) { secure_ = std::move(t); }

asio::any_io_executor client_stream::get_executor() {
    return secure_ ? secure_->get_executor() : socket_.get_executor();
}

int client_stream::native_handle() {
    if (secure_) return secure_->native_handle();
    return socket_.is_open() ? static_cast<int>(socket_.native_handle()) : -1;
}

std::size_t client_stream::try_read(std::span<char> buf, error_code& ec) {
    if (secure_) return secure_->try_read(buf, ec);
    if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
    const std::size_t n = socket_.read_some(asio::buffer(buf.data(), buf.size()), ec);
    if (ec == asio::error::try_again) ec = asio::error::would_block;
    return n;
}

// Single exits: GCC 12 miscompiles early co_returns in some small coroutines.
asio::awaitable<error_code> client_stream::wait_readable() {
    error_code ec;
    if (secure_) {
        ec = co_await secure_->wait_readable();
    } else {
        auto [wec] = co_await socket_.async_wait(tcp::socket::wait_read, use_nothrow);
        ec = wec;
    }
    co_return ec;
}

asio::awaitable<std::tuple<error_code, std::size_t>> client_stream::read_some(
    asio::mutable_buffer buf) {
    error_code ec;
    std::size_t n = 0;
    for (;;) {
        n = try_read({static_cast<char*>(buf.data()), buf.size()}, ec);
        if (ec != asio::error::would_block) break;
        ec = co_await wait_readable();
        if (ec) break;
    }
    co_return std::tuple{ec, n};
}

asio::awaitable<std::tuple<error_code, std::size_t>> client_stream::read_exactly(
    asio::mutable_buffer buf) {
    std::size_t done = 0;
    error_code ec;
    while (done < buf.size()) {
        auto [rec, n] = co_await read_some(asio::buffer(buf + done));
        done += n;
        if (rec) {
            ec = rec;
            break;
        }
    }
    co_return std::tuple{ec, done};
}

asio::awaitable<std::tuple<error_code, std::size_t>> client_stream::write(asio::const_buffer buf) {
    std::size_t done = 0;
    error_code ec;
    if (!secure_) {
        auto [wec, n] = co_await asio::async_write(socket_, buf, use_nothrow);
        ec = wec;
        done = n;
    }
    while (secure_ && done < buf.size()) {
        const asio::const_buffer rest = buf + done;
        done += secure_->try_write({&rest, 1}, ec);
        if (ec == asio::error::would_block) {
            ec = co_await secure_->wait_writable();
        }
        if (ec) break;
    }
    if (secure_ && !ec) ec = co_await send_pending();
    co_return std::tuple{ec, done};
}

// The ciphertext of plaintext TLS took while the socket was full: until all of it is sent.
asio::awaitable<error_code> client_stream::send_pending() {
    error_code ec;
    while (secure_->output_pending()) {
        secure_->try_write({}, ec);
        if (ec == asio::error::would_block) {
            ec = co_await secure_->wait_writable();
        }
        if (ec) break;
    }
    co_return ec;
}

asio::awaitable<error_code> client_stream::shutdown_send() {
    error_code ec;
    if (!secure_) {
        socket_.shutdown(tcp::socket::shutdown_send, ec);
    } else {
        shut_ = true;
        secure_->shutdown_send();
        ec = co_await send_pending();
    }
    co_return ec;
}

void client_stream::shutdown_send_now() noexcept {
    if (secure_) {
        if (!shut_) secure_->shutdown_send();
        shut_ = true;
    } else {
        error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_send, ignored);
    }
}

void client_stream::close() noexcept {
    if (secure_ && !shut_) secure_->shutdown_send();
    shut_ = true;
    if (secure_) secure_->close();
    error_code ignored;
    socket_.close(ignored);
}

}  // namespace framecast::io
