// The WebSocket gateway: accepts HTTP connections, answers the live page's files, and hands
// upgraded connections to the server as ws_transports. Every connection in its HTTP phase is
// held to the header limit and to one deadline from its first byte to the end of the handshake.
#include "framecast/io/ws_gateway.hpp"

#include <algorithm>
#include <list>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include "bridge_pair.hpp"
#include "http_read_status.hpp"
#include "framecast/io/endpoint.hpp"
#include "transport/tls.hpp"
#include "framecast/io/json.hpp"
#include "transport/ws.hpp"
#include "ws/assets.hpp"

namespace framecast::io {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

struct ws_gateway::state {
    state(asio::io_context& io_, ws_options o, codec_options c, ws_page_info p, admit_fn a,
          room_fn r)
        : io(io_), opts(std::move(o)), codec(c), page(std::move(p)), admit(std::move(a)),
          has_room(std::move(r)), acceptor(io_) {
        for (const auto& a : opts.trusted_proxies) {
            error_code ec;
            auto addr = asio::ip::make_address(a, ec);
            if (ec) throw std::invalid_argument("--ws-trust-proxy: '" + a + "' is not an IP address");
            proxies.push_back(addr);
        }
    }
    asio::io_context& io;
    ws_options opts;
    codec_options codec;
    ws_page_info page;
    admit_fn admit;
    room_fn has_room;
    std::vector<asio::ip::address> proxies;  // opts.trusted_proxies, parsed
    tcp::acceptor acceptor;
    // Sockets still in their HTTP phase, so stop() can close them and max_pending holds.
    std::list<tcp::socket*> pending;
    std::shared_ptr<std::size_t> live = std::make_shared<std::size_t>(0);
    bool stopped = false;
};

namespace {

// An IPv4 address mapped into IPv6 (a dual-stack listener) is the IPv4 address.
asio::ip::address unmapped(const asio::ip::address& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped()) {
        return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
    }
    return a;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

std::optional<asio::ip::address> ws_client_address(const asio::ip::address& peer,
                                                   const std::vector<asio::ip::address>& trusted,
                                                   std::string_view forwarded_for) {
    const auto me = unmapped(peer);
    const bool proxy = std::any_of(trusted.begin(), trusted.end(),
                                   [&](const auto& t) { return unmapped(t) == me; });
    if (!proxy || trim(forwarded_for).empty()) return me;
    // The last entry is the one the proxy added: the address it accepted the connection from.
    // Entries before it were written by the client (or other proxies) and prove nothing.
    std::string_view last = forwarded_for;
    if (auto comma = last.rfind(','); comma != std::string_view::npos) last = last.substr(comma + 1);
    last = trim(last);
    if (last.size() > 2 && last.front() == '[' && last.find(']') != std::string_view::npos) {
        last = last.substr(1, last.find(']') - 1);  // "[v6]:port"
    } else if (std::count(last.begin(), last.end(), ':') == 1) {
        last = last.substr(0, last.find(':'));  // "v4:port"
    }
    error_code ec;
    auto addr = asio::ip::make_address(std::string(last), ec);
    if (ec) return std::nullopt;
    return unmapped(addr);
}

namespace {

using request = http::request<http::empty_body>;
using response = http::response<http::string_body>;

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

response text_response(unsigned status, std::string body, bool keep_alive) {
    response res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.set(http::field::cache_control, "no-store");
    res.body() = std::move(body);
    res.prepare_payload();
    res.keep_alive(keep_alive);
    return res;
}

std::string json_string(std::string_view s) {
    std::string out = "\"";
    append_json_string(out, s);
    return out + "\"";
}

std::string config_json(const ws_gateway::state& s) {
    return "{\"mode\":" + json_string(s.page.mode) +
           ",\"max_message\":" + std::to_string(s.page.max_message) +
           ",\"max_name\":" + std::to_string(s.page.max_name) +
           ",\"version\":" + json_string(s.page.version) + "}\n";
}

// A GET or HEAD of the page's files.
response answer(const ws_gateway::state& s, const request& req) {
    const bool keep = req.keep_alive();
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        auto res = text_response(405, "method not allowed: GET or HEAD only\n", keep);
        res.set(http::field::allow, "GET, HEAD");
        return res;
    }
    std::string_view target = req.target();
    target = target.substr(0, target.find('?'));
    response res{http::status::ok, 11};
    if (target == "/config.json") {
        res.set(http::field::content_type, "application/json");
        res.body() = config_json(s);
    } else if (const auto* a = find_ws_asset(target)) {
        res.set(http::field::content_type, a->content_type);
        res.body() = a->body;
    } else {
        return text_response(404, "not found\n", keep);
    }
    res.set(http::field::cache_control, "no-cache");
    res.set("X-Content-Type-Options", "nosniff");
    res.set("Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:");
    res.prepare_payload();
    if (req.method() == http::verb::head) res.body().clear();
    res.keep_alive(keep);
    return res;
}

// Why an upgrade request is refused (status and text), or nothing.
std::optional<std::pair<unsigned, std::string>> refusal(const ws_gateway::state& s,
                                                        const request& req) {
    const auto origin = req[http::field::origin];
    if (!origin.empty() && !s.opts.origins.empty()) {
        const bool allowed = std::any_of(s.opts.origins.begin(), s.opts.origins.end(),
                                         [&](const std::string& o) {
                                             return o == "*" || iequals(o, origin);
                                         });
        if (!allowed) {
            return std::pair{403u, "origin '" + std::string(origin) +
                                       "' is not allowed (--ws-origin)\n"};
        }
    }
    if (!s.has_room()) return std::pair{503u, std::string("server full (max clients)\n")};
    return std::nullopt;
}

void configure(ws_stream& ws, const ws_gateway::state& s) {
    websocket::permessage_deflate pmd;
    pmd.server_enable = s.opts.deflate;
    ws.set_option(pmd);
    websocket::stream_base::timeout t;
    t.handshake_timeout = s.opts.handshake_timeout;
    if (s.opts.ping_interval.count() > 0) {
        t.idle_timeout = 2 * s.opts.ping_interval;
        t.keep_alive_pings = true;
    } else {
        t.idle_timeout = websocket::stream_base::none();
        t.keep_alive_pings = false;
    }
    ws.set_option(t);
    ws.read_message_max(s.codec.max_message);
}

// Upgrades: false when the handshake failed (logged).
asio::awaitable<void> upgrade(std::shared_ptr<ws_gateway::state> self, tcp::socket sock,
                              request req, std::string early, std::string peer,
                              asio::ip::address from, std::shared_ptr<X509> cert) {
    ws_stream ws(std::move(sock));
    configure(ws, *self);
    // What the client sent behind its request (its first frames) was read with the request.
    if (!early.empty()) ws.next_layer().replay(std::move(early));
    auto entry = self->pending.insert(self->pending.end(), &beast::get_lowest_layer(ws));
    auto [ec] = co_await ws.async_accept(req, use_nothrow);
    self->pending.erase(entry);
    if (ec || self->stopped) {
        spdlog::debug("websocket {}: handshake failed: {}", peer, ec.message());
        co_return;
    }
    auto t = std::make_unique<ws_transport>(std::move(ws), self->codec, peer, self->live);
    t->set_peer_certificate(std::move(cert));
    self->admit(std::move(t), from);
}

// `known`: the peer when `sock` is a TLS bridge's end (wss://), not the network connection;
// `cert`: then the client certificate its handshake verified (for serve --auth cert).
asio::awaitable<void> serve_connection(std::shared_ptr<ws_gateway::state> self, tcp::socket sock,
                                       std::optional<tcp::endpoint> known = std::nullopt,
                                       std::shared_ptr<X509> cert = nullptr) {
    error_code ignored;
    const auto remote = known ? *known : sock.remote_endpoint(ignored);
    const std::string peer = ignored ? std::string("(unknown peer)") : format_endpoint(remote);
    beast::tcp_stream stream(std::move(sock));
    auto entry = self->pending.insert(self->pending.end(), &stream.socket());
    struct unregister {
        ws_gateway::state& s;
        std::list<tcp::socket*>::iterator it;
        bool done = false;
        void now() {
            if (!done) s.pending.erase(it);
            done = true;
        }
        ~unregister() { now(); }
    } guard{*self, entry};
    beast::flat_buffer buffer(self->opts.header_bytes + 4096);
    for (int served = 0; served < 100 && !self->stopped; ++served) {
        http::request_parser<http::empty_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(self->opts.header_bytes));
        parser.body_limit(0);
        stream.expires_after(self->opts.handshake_timeout);
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
        if (ec) {
            if (auto status = http_read_status(ec)) {
                spdlog::debug("websocket http {}: {}", peer, ec.message());
                auto res = text_response(*status, ec.message() + "\n", false);
                co_await http::async_write(stream, res, use_nothrow);
            } else if (ec == beast::error::timeout) {
                spdlog::debug("websocket http {}: no complete request within {} ms", peer,
                              self->opts.handshake_timeout.count());
            }
            break;
        }
        auto req = parser.release();
        if (websocket::is_upgrade(req)) {
            // Several X-Forwarded-For lines: the last one is the nearest proxy's.
            std::string_view xff;
            for (auto [it, end] = req.equal_range("X-Forwarded-For"); it != end; ++it) xff = it->value();
            auto from = ws_client_address(remote.address(), self->proxies, xff);
            if (!from) {
                spdlog::warn("websocket {}: refused: X-Forwarded-For '{}' from a trusted proxy "
                             "does not end with an IP address",
                             peer, std::string(xff.substr(0, 200)));
                auto res = text_response(400, "bad X-Forwarded-For\n", false);
                co_await http::async_write(stream, res, use_nothrow);
                break;
            }
            // Behind a trusted proxy the client is who the proxy says: logs name both.
            std::string client = peer;
            if (*from != unmapped(remote.address())) {
                client = format_endpoint(tcp::endpoint(*from, 0));
                client = client.substr(0, client.rfind(':')) + " via " + peer;
            }
            if (auto why = refusal(*self, req)) {
                spdlog::info("websocket {}: refused: {}", client, why->second.substr(0, why->second.size() - 1));
                auto res = text_response(why->first, why->second, false);
                co_await http::async_write(stream, res, use_nothrow);
                break;
            }
            guard.now();
            // The deadline still runs for the handshake: the stream's own handshake timeout.
            std::string early = beast::buffers_to_string(buffer.data());
            co_await upgrade(self, stream.release_socket(), std::move(req), std::move(early),
                             client, *from, std::move(cert));
            co_return;
        }
        auto res = answer(*self, req);
        auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
        if (wec || !res.keep_alive()) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.socket().close(ignored);
}

// wss://: the TLS handshake (bounded by the handshake timeout), then the HTTP/WebSocket
// connection is served over a local pair whose other end a TLS bridge feeds.
asio::awaitable<void> serve_tls(std::shared_ptr<ws_gateway::state> self, tcp::socket sock) {
    error_code ec;
    const auto remote = sock.remote_endpoint(ec);
    if (ec) co_return;
    auto t = std::make_unique<tls_transport>(std::move(sock), self->opts.tls);
    std::string why;
    const error_code hec = co_await t->handshake(self->opts.handshake_timeout, why);
    if (hec || self->stopped) {
        spdlog::info("websocket {}: TLS handshake failed: {}", format_endpoint(remote), why);
        co_return;
    }
    tcp::socket mine(self->io);
    asio::local::stream_protocol::socket theirs(self->io);
    std::string what;
    if (make_bridge_pair(mine, theirs, "wss", what)) {
        spdlog::warn("websocket {}: {}", format_endpoint(remote), what);
        co_return;
    }
    // The certificate outlives the TLS connection's object, which the bridge owns.
    std::shared_ptr<X509> cert;
    if (X509* c = t->peer_certificate(); c && X509_up_ref(c) == 1) cert.reset(c, X509_free);
    start_tls_bridge(std::move(t), std::move(theirs));
    co_await serve_connection(self, std::move(mine), remote, std::move(cert));
}

asio::awaitable<void> accept_loop(std::shared_ptr<ws_gateway::state> self) {
    asio::steady_timer backoff(self->io);
    while (!self->stopped) {
        auto [ec, sock] = co_await self->acceptor.async_accept(use_nothrow);
        if (self->stopped) break;
        if (ec) {
            spdlog::warn("websocket listener: accept failed: {}; retrying", ec.message());
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(use_nothrow);
            continue;
        }
        if (self->pending.size() >= self->opts.max_pending) {
            spdlog::warn("websocket listener: {} connections still in their handshake; closing "
                         "a new one",
                         self->pending.size());
            sock.close(ec);
            continue;
        }
        sock.set_option(tcp::no_delay(true), ec);
        if (self->opts.tls) {
            asio::co_spawn(self->io, serve_tls(self, std::move(sock)), asio::detached);
        } else {
            asio::co_spawn(self->io, serve_connection(self, std::move(sock)), asio::detached);
        }
    }
}

}  // namespace

ws_gateway::ws_gateway(asio::io_context& io, ws_options opts, codec_options codec,
                       ws_page_info page, admit_fn admit, room_fn has_room)
    : state_(std::make_shared<state>(io, std::move(opts), codec, std::move(page),
                                     std::move(admit), std::move(has_room))) {}

ws_gateway::~ws_gateway() { stop(); }

tcp::endpoint ws_gateway::listen(const tcp::endpoint& ep) {
    auto& a = state_->acceptor;
    a.open(ep.protocol());
    a.set_option(tcp::acceptor::reuse_address(true));
    if (ep.address().is_v6()) {
        error_code ec;
        a.set_option(asio::ip::v6_only(!ep.address().is_unspecified()), ec);
    }
    a.bind(ep);
    a.listen(asio::socket_base::max_listen_connections);
    return a.local_endpoint();
}

void ws_gateway::reload_tls(std::shared_ptr<asio::ssl::context> tls) {
    state_->opts.tls = std::move(tls);
}

void ws_gateway::start() { asio::co_spawn(state_->io, accept_loop(state_), asio::detached); }

void ws_gateway::stop() {
    if (state_->stopped) return;
    state_->stopped = true;
    error_code ignored;
    state_->acceptor.close(ignored);
    for (auto* s : state_->pending) s->close(ignored);
}

asio::awaitable<void> ws_gateway::flushed(steady::time_point deadline) {
    auto live = state_->live;
    asio::steady_timer t(state_->io);
    while (*live > 0 && steady::now() < deadline) {
        t.expires_after(std::chrono::milliseconds(10));
        co_await t.async_wait(use_nothrow);
    }
}

}  // namespace framecast::io
