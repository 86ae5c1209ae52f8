// A small HTTP/1.1 server (Beast) for operations endpoints such as /metrics and /healthz. It
// runs on the caller's io_context, beside the framecast server, and holds every peer to strict
// limits, so a scraper or an attacker can neither grow the process nor stall the event loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "framecast/io/asio.hpp"
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace framecast::io {

struct http_limits {
    // Request line and headers together; more is answered 431 and the connection closed.
    std::size_t header_bytes = 8 * 1024;
    // One request, from its first byte (or the end of the previous response on a kept-alive
    // connection) to the end of its response; past it the connection is closed.
    std::chrono::milliseconds request_deadline{std::chrono::seconds(2)};
    // Connections open at once; one more is closed as soon as it is accepted.
    std::size_t max_connections = 64;
};

struct http_response {
    unsigned status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

class http_server {
public:
    // Answers a GET or HEAD of `path` (the target without its query); runs on the io_context's
    // thread, so it must not block. Other methods are answered 405, a request with a body 413.
    using handler = std::function<http_response(std::string_view path)>;

    http_server(asio::io_context& io, handler on_request, http_limits limits = {});
    ~http_server();
    http_server(const http_server&) = delete;
    http_server& operator=(const http_server&) = delete;

    // Binds and listens; returns the bound endpoint (port 0 becomes the chosen port). Throws
    // framecast::system_error whose code() says why (e.g. asio::error::address_in_use).
    asio::ip::tcp::endpoint listen(const asio::ip::tcp::endpoint& ep);
    // Starts accepting.
    void start();
    // Closes the listener and every open connection; idempotent.
    void stop();

    std::size_t connection_count() const noexcept;

    struct state;

private:
    std::shared_ptr<state> state_;
};

}  // namespace framecast::io
