#include "framecast/io/ws_client.hpp"

#include <sys/socket.h>

#include <array>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <spdlog/spdlog.h>

#include "bridge_pair.hpp"
#include "framecast/io/endpoint.hpp"
#include "transport/ws.hpp"

namespace framecast::io {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using local_socket = asio::local::stream_protocol::socket;
// The client side writes what its user sends, as it comes: no corking (transport/ws_cork.hpp).
using ws_client_stream = websocket::stream<tcp::socket>;

namespace {

struct bridge {
    bridge(ws_client_stream w, local_socket l, codec_options c)
        : ws(std::move(w)), local(std::move(l)), codec(c), dec(c, decode_mode::whole) {}
    ws_client_stream ws;
    local_socket local;
    codec_options codec;
    decoder dec;
};

void log_close(const ws_client_stream& ws) {
    const auto& r = ws.reason();
    if (r.code == websocket::close_code::normal || r.code == websocket::close_code::going_away ||
        r.code == websocket::close_code::none) {
        return;
    }
    spdlog::warn("websocket closed by the server: code {}{}{}", static_cast<unsigned>(r.code),
                 r.reason.empty() ? "" : ": ", std::string(r.reason.c_str()));
}

// WebSocket messages → frames on the client's socket.
asio::awaitable<void> downstream(std::shared_ptr<bridge> b) {
    beast::flat_buffer buf;
    for (;;) {
        auto [ec, n] = co_await b->ws.async_read(buf, use_nothrow);
        if (ec) {
            log_close(b->ws);
            if (ec != websocket::error::closed) spdlog::debug("websocket read: {}", ec.message());
            error_code ignored;
            b->local.shutdown(local_socket::shutdown_send, ignored);
            co_return;
        }
        const auto data = buf.cdata();
        std::string_view payload(static_cast<const char*>(data.data()), data.size());
        frame_header h;
        if (auto fec = encode_header(payload, h, b->codec)) {
            spdlog::error("websocket: cannot frame a {}-byte message: {}", payload.size(),
                          fec.message());
            error_code ignored;
            b->local.close(ignored);
            co_return;
        }
        std::array<asio::const_buffer, 2> out{asio::buffer(h.data(), h.size()),
                                              asio::buffer(payload.data(), payload.size())};
        auto [wec, wn] = co_await asio::async_write(b->local, out, use_nothrow);
        if (wec) co_return;
        buf.consume(n);
    }
}

// Frames the client writes → WebSocket messages.
asio::awaitable<void> upstream(std::shared_ptr<bridge> b) {
    std::vector<char> buf(64 * 1024);
    for (;;) {
        auto [ec, n] = co_await b->local.async_read_some(asio::buffer(buf), use_nothrow);
        if (ec) break;
        std::span<const char> in(buf.data(), n);
        for (;;) {
            const auto ev = b->dec.next(in);
            if (ev == decode_event::need_more) break;
            if (ev == decode_event::error) {
                spdlog::error("websocket: bad frame from the client: {}", b->dec.error_message());
                co_await b->ws.async_close(websocket::close_code::protocol_error, use_nothrow);
                co_return;
            }
            // The payload is a view into buf or the decoder: both stay put during the write.
            const auto payload = b->dec.payload();
            b->ws.text(ws_is_text(payload));
            auto [wec, wn] = co_await b->ws.async_write(
                asio::buffer(payload.data(), payload.size()), use_nothrow);
            if (wec) co_return;
        }
    }
    if (b->ws.is_open()) co_await b->ws.async_close(websocket::close_code::normal, use_nothrow);
}

}  // namespace

asio::awaitable<error_code> async_connect_ws(tcp::socket& socket, std::string host,
                                             std::uint16_t port, std::string path,
                                             duration timeout, std::string& what,
                                             codec_options codec, const tls_client_options& tls) {
    auto ex = co_await asio::this_coro::executor;
    const auto started = std::chrono::steady_clock::now();
    tcp::socket raw(ex);
    if (tls.enabled) {
        // `raw` becomes the TLS bridge's end: plaintext to us, TLS to the server.
        auto ec = co_await async_connect_tls(raw, host, port, tls, timeout, what);
        if (ec) co_return ec;
    } else {
        auto ec = co_await async_connect(raw, host, port, timeout, what);
        if (ec) co_return ec;
    }
    const std::string name = format_host_port(host.empty() ? "localhost" : host, port);
    ws_client_stream ws(std::move(raw));
    websocket::stream_base::timeout t;
    t.handshake_timeout = std::max<duration>(timeout - (std::chrono::steady_clock::now() - started),
                                             std::chrono::milliseconds(1));
    t.idle_timeout = websocket::stream_base::none();
    t.keep_alive_pings = false;
    ws.set_option(t);
    ws.read_message_max(codec.max_message);
    ws.auto_fragment(false);
    // Named first: GCC 12 mishandles a temporary std::string inside a co_await expression.
    const std::string target = path.empty() ? std::string("/") : path;
    auto [hec] = co_await ws.async_handshake(name, target, use_nothrow);
    if (hec) {
        what = "websocket handshake with " + name + " failed: " + hec.message();
        co_return hec;
    }
    local_socket local(ex);
    const error_code bec = make_bridge_pair(socket, local, "websocket", what);
    if (bec) co_return bec;
    auto b = std::make_shared<bridge>(std::move(ws), std::move(local), codec);
    asio::co_spawn(ex, downstream(b), asio::detached);
    asio::co_spawn(ex, upstream(b), asio::detached);
    co_return error_code{};
}

}  // namespace framecast::io
