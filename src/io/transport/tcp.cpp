#include "transport/tcp.hpp"

#include "framecast/io/endpoint.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace framecast::io {

using asio::ip::tcp;

tcp_transport::tcp_transport(tcp::socket socket) : socket_(std::move(socket)) {
    error_code ec;
    socket_.non_blocking(true, ec);
    socket_.set_option(tcp::no_delay(true), ec);
    enable_keepalive();
}

// A peer that vanished (power loss, a dropped route) would otherwise hold its slot forever:
// keepalive probes after 60 s of silence (every 10 s, 6 times), and unacknowledged data or
// unanswered probes abort the connection after 120 s (TCP_USER_TIMEOUT).
void tcp_transport::enable_keepalive() noexcept {
    error_code ec;
    socket_.set_option(asio::socket_base::keep_alive(true), ec);
    const int fd = socket_.native_handle();
    const int idle = 60, interval = 10, count = 6;
    const unsigned user_timeout_ms = 120'000;
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
}

std::size_t tcp_transport::try_read(std::span<char> buf, error_code& ec) {
    std::size_t n = socket_.read_some(asio::buffer(buf.data(), buf.size()), ec);
    if (ec == asio::error::try_again) ec = asio::error::would_block;
    return n;
}

std::size_t tcp_transport::try_write(std::span<const asio::const_buffer> bufs, error_code& ec) {
    std::size_t n = socket_.write_some(bufs, ec);
    if (ec == asio::error::try_again) ec = asio::error::would_block;
    return n;
}

asio::awaitable<error_code> tcp_transport::wait_readable() {
    auto [ec] = co_await socket_.async_wait(tcp::socket::wait_read, use_nothrow);
    co_return ec;
}

void tcp_transport::on_readable(std::function<void(error_code)> fn) {
    socket_.async_wait(tcp::socket::wait_read, std::move(fn));
}

asio::awaitable<error_code> tcp_transport::wait_writable() {
    auto [ec] = co_await socket_.async_wait(tcp::socket::wait_write, use_nothrow);
    co_return ec;
}

void tcp_transport::shutdown_send() noexcept {
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
}

void tcp_transport::close() noexcept {
    error_code ec;
    socket_.close(ec);
}

std::string tcp_transport::peer_name() const {
    error_code ec;
    auto peer = socket_.remote_endpoint(ec);
    return ec ? "(unknown peer)" : format_endpoint(peer);
}

}  // namespace framecast::io
