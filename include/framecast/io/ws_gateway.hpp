// The WebSocket gateway: an HTTP listener (Beast) that serves the live page (`/`,
// `/framecast.js`, `/config.json`) and upgrades WebSocket requests into clients of the
// framecast server, each over a ws_transport (one framecast message = one WebSocket message).
// Runs on the server's io_context. See docs/websocket.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "framecast/codec.hpp"
#include "framecast/io/asio.hpp"
#include "framecast/io/transport.hpp"
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace boost::asio::ssl {
class context;
}

namespace framecast::io {

struct ws_options {
    // Origin header values allowed to open a WebSocket ("https://example.com", compared
    // without regard to case); empty: any. A request without Origin (not a browser) is allowed.
    std::vector<std::string> origins;
    // permessage-deflate: off by default, it costs CPU and memory per client at fan-out.
    bool deflate = false;
    // Request line and headers of the HTTP request (also the upgrade request); more: 431.
    std::size_t header_bytes = 8 * 1024;
    // From the connection's first byte to the end of the WebSocket handshake (or of an HTTP
    // response); a slow handshake is closed, it cannot hold a slot. Also bounds the closing
    // handshake.
    std::chrono::milliseconds handshake_timeout{std::chrono::seconds(5)};
    // A ping when nothing arrived for this long; a client silent for twice as long (no pong) is
    // closed. 0: no keepalive.
    std::chrono::milliseconds ping_interval{std::chrono::seconds(20)};
    // Connections still in their HTTP phase at once; one more is closed on accept.
    std::size_t max_pending = 256;
    // Reverse proxies (IP addresses) whose X-Forwarded-For is believed: a connection from one
    // of them is the client named by the header's last entry (the address the proxy itself
    // appended) in logs, per-address limits and metrics. From anyone else the header is
    // ignored. Empty: never believed.
    std::vector<std::string> trusted_proxies;
    // wss:// (--ws-tls): the node makes `tls` from the server's --tls-cert/--tls-key.
    bool wss = false;
    // TLS on the listener; null: ws://.
    std::shared_ptr<asio::ssl::context> tls;
};

// The client a request comes from: `peer` itself, or, when `peer` is one of `trusted` and the
// request carries X-Forwarded-For, the header's last entry; nullopt when that entry is not an
// IP address (the request is refused: a trusted proxy sent something we cannot account for).
std::optional<asio::ip::address> ws_client_address(const asio::ip::address& peer,
                                                   const std::vector<asio::ip::address>& trusted,
                                                   std::string_view forwarded_for);

// What the live page is told at /config.json.
struct ws_page_info {
    std::string mode = "stream";  // "stream", "publish" or "chat"
    std::uint64_t max_message = 0;
    std::size_t max_name = 0;
    std::string version;
};

class ws_gateway {
public:
    // `from`: the client's address (the X-Forwarded-For one behind a trusted proxy), for the
    // per-address limit.
    using admit_fn = std::function<void(std::unique_ptr<transport>, const asio::ip::address& from)>;
    // Whether the server has room for one more client (max_clients); asked before upgrading.
    using room_fn = std::function<bool()>;

    // Throws std::invalid_argument when a trusted proxy is not an IP address.
    ws_gateway(asio::io_context& io, ws_options opts, codec_options codec, ws_page_info page,
               admit_fn admit, room_fn has_room);
    ~ws_gateway();
    ws_gateway(const ws_gateway&) = delete;
    ws_gateway& operator=(const ws_gateway&) = delete;

    // Binds and listens (port 0 picks one); throws framecast::system_error.
    asio::ip::tcp::endpoint listen(const asio::ip::tcp::endpoint& ep);
    void start();
    // wss://: new connections use `tls` (SIGHUP's reloaded certificate); connections already
    // made keep the context they were made with.
    void reload_tls(std::shared_ptr<asio::ssl::context> tls);
    // Closes the listener and the connections not yet upgraded; idempotent. Upgraded ones
    // belong to the server.
    void stop();
    // Until every upgraded connection the server closed has flushed its last messages and
    // closed (their bytes live in this process, not the kernel), or `deadline`.
    asio::awaitable<void> flushed(std::chrono::steady_clock::time_point deadline);

    struct state;

private:
    std::shared_ptr<state> state_;
};

}  // namespace framecast::io
