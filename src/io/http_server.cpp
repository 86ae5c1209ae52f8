#include "framecast/io/http_server.hpp"
#include "http_read_status.hpp"

#include <list>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <spdlog/spdlog.h>

namespace framecast::io {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct http_server::state {
    state(asio::io_context& io_, handler fn, http_limits l)
        : io(io_), on_request(std::move(fn)), limits(l), acceptor(io_) {}
    asio::io_context& io;
    handler on_request;
    http_limits limits;
    tcp::acceptor acceptor;
    // Open connections, so stop() can close them; each connection removes itself.
    std::list<beast::tcp_stream*> connections;
    bool stopped = false;
};

std::optional<unsigned> http_read_status(const error_code& ec) {
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) return 431;
    if (ec == http::error::body_limit || ec == http::error::unexpected_body) return 413;
    if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
        return 400;
    }
    return std::nullopt;
}

namespace {

const char* reason_text(unsigned status) {
    switch (status) {
        case 400: return "bad request\n";
        case 404: return "not found\n";
        case 405: return "method not allowed: GET or HEAD only\n";
        case 413: return "a request carries no body here\n";
        case 431: return "request header too large\n";
        default: return "\n";
    }
}

http::response<http::string_body> make_response(const http_response& r, bool head, bool keep_alive) {
    http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
    res.set(http::field::content_type, r.content_type);
    res.set(http::field::cache_control, "no-store");
    if (r.status == 405) res.set(http::field::allow, "GET, HEAD");
    res.content_length(r.body.size());
    if (!head) res.body() = r.body;
    res.keep_alive(keep_alive);
    return res;
}

http_response answer(http_server::state& s, const http::request<http::empty_body>& req) {
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        return {405, "text/plain; charset=utf-8", reason_text(405)};
    }
    std::string_view target = req.target();
    return s.on_request(target.substr(0, target.find('?')));
}

asio::awaitable<void> serve_connection(std::shared_ptr<http_server::state> self, tcp::socket sock) {
    beast::tcp_stream stream(std::move(sock));
    auto entry = self->connections.insert(self->connections.end(), &stream);
    struct unregister {
        http_server::state& s;
        std::list<beast::tcp_stream*>::iterator it;
        ~unregister() { s.connections.erase(it); }
    } guard{*self, entry};
    // The parser stops at header_bytes; the buffer's own cap (a little more, for what arrives
    // with the header in one read) bounds a connection's memory even if it did not.
    beast::flat_buffer buffer(self->limits.header_bytes + 4096);
    for (;;) {
        http::request_parser<http::empty_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(self->limits.header_bytes));
        parser.body_limit(0);
        stream.expires_after(self->limits.request_deadline);
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
        if (ec) {
            if (auto status = http_read_status(ec)) {
                spdlog::debug("metrics http: closing a connection: {}", ec.message());
                auto res = make_response({*status, "text/plain; charset=utf-8", reason_text(*status)},
                                         false, false);
                co_await http::async_write(stream, res, use_nothrow);
            }
            break;
        }
        const auto& req = parser.get();
        auto res = make_response(answer(*self, req), req.method() == http::verb::head,
                                 req.keep_alive());
        auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
        if (wec || !res.keep_alive()) break;
    }
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.socket().close(ignored);
}

asio::awaitable<void> accept_loop(std::shared_ptr<http_server::state> self) {
    asio::steady_timer backoff(self->io);
    while (!self->stopped) {
        auto [ec, sock] = co_await self->acceptor.async_accept(use_nothrow);
        if (self->stopped) break;
        if (ec) {
            // E.g. out of descriptors: try again a little later instead of spinning.
            spdlog::warn("metrics http: accept failed: {}", ec.message());
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(use_nothrow);
            continue;
        }
        if (self->connections.size() >= self->limits.max_connections) {
            spdlog::debug("metrics http: {} connections open already; closing a new one",
                          self->connections.size());
            sock.close(ec);
            continue;
        }
        asio::co_spawn(self->io, serve_connection(self, std::move(sock)), asio::detached);
    }
}

}  // namespace

http_server::http_server(asio::io_context& io, handler on_request, http_limits limits)
    : state_(std::make_shared<state>(io, std::move(on_request), limits)) {}

http_server::~http_server() { stop(); }

tcp::endpoint http_server::listen(const tcp::endpoint& ep) {
    auto& a = state_->acceptor;
    a.open(ep.protocol());
    a.set_option(tcp::acceptor::reuse_address(true));
    if (ep.address().is_v6()) a.set_option(asio::ip::v6_only(true));
    a.bind(ep);
    a.listen();
    return a.local_endpoint();
}

void http_server::start() {
    asio::co_spawn(state_->io, accept_loop(state_), asio::detached);
}

void http_server::stop() {
    if (state_->stopped) return;
    state_->stopped = true;
    error_code ignored;
    state_->acceptor.close(ignored);
    for (auto* s : state_->connections) s->socket().close(ignored);
}

std::size_t http_server::connection_count() const noexcept { return state_->connections.size(); }

}  // namespace framecast::io
