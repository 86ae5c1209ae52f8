// The TCP transport: an asio::ip::tcp::socket in non-blocking mode with Nagle off.
#pragma once

#include <memory>
#include <string>

#include "framecast/io/transport.hpp"
#include <boost/asio/ip/tcp.hpp>

namespace framecast::io {

class tcp_transport final : public transport {
public:
    explicit tcp_transport(asio::ip::tcp::socket socket);

    std::size_t try_read(std::span<char> buf, error_code& ec) override;
    std::size_t try_write(std::span<const asio::const_buffer> bufs, error_code& ec) override;
    asio::awaitable<error_code> wait_readable() override;
    void on_readable(std::function<void(error_code)> fn) override;
    asio::awaitable<error_code> wait_writable() override;
    void shutdown_send() noexcept override;
    void close() noexcept override;
    std::string peer_name() const override;
    asio::any_io_executor get_executor() override { return socket_.get_executor(); }

private:
    void enable_keepalive() noexcept;
    asio::ip::tcp::socket socket_;
};

}  // namespace framecast::io
