// A framecast node: one server with its listeners, its source (the clock or standard input),
// an optional backplane bridge, an optional metrics endpoint, and a graceful shutdown, all on
// one io_context driven by the thread that calls run(). What `framecast serve` runs.
//
// Lifecycle (one coroutine): listen → start → serve until the first stop (a signal, or the end
// of standard input) → wait for this node's own messages to come back from the backplane →
// flush the clients' queues → stop. Both waits share one budget, the drain timeout; a second
// signal closes every client at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "framecast/backplane.hpp"
#include "framecast/io/http_server.hpp"
#include "framecast/io/server.hpp"
#include "framecast/io/ws_gateway.hpp"

namespace framecast::io {

// Where to listen: a host name or address ("" or "*": all interfaces, [::] dual-stack or
// 0.0.0.0) and a port (0: any free port).
struct listen_address {
    std::string host;
    std::uint16_t port = 0;
};

enum class source_kind {
    none,          // only clients (or the backplane) publish
    time,          // "The time is <unix time>" every interval
    stdin_lines,   // each line of standard input is a message
    stdin_framed,  // standard input is framed already
};

struct node_options {
    server_options server;
    // Empty: all interfaces on default_port.
    std::vector<listen_address> listen;
    static constexpr std::uint16_t default_port = 1243;
    source_kind source = source_kind::time;
    // The source (clock or standard input) starts only once this many clients are connected,
    // so a short input is not streamed to nobody; 0: at once.
    std::size_t wait_for = 0;
    // Between two time messages.
    std::chrono::milliseconds interval{std::chrono::seconds(3)};
    // At shutdown, for the backplane round trip and then for the clients' queues together.
    std::chrono::milliseconds drain_timeout{std::chrono::seconds(5)};
    // The time source publishes through the backplane (one clock for all nodes) instead of
    // sending its ticks to this node's clients only.
    bool backplane_time = false;
    // Prometheus text at /metrics and a health check at /healthz; none when unset.
    std::optional<listen_address> metrics;
    http_limits metrics_limits;
    // The WebSocket gateway and live page (docs/websocket.md); none when unset. Announced as
    // "websocket on ws://HOST:PORT/" (the page at http://HOST:PORT/).
    std::optional<listen_address> ws;
    ws_options ws_opts;
    // Reported as framecast_build_info{version}.
    std::string version;
    // SIGINT / SIGTERM: the first drains, the second closes at once.
    bool handle_signals = true;
    int stdin_fd = 0;
    // When set, what clients send is handed here (on the io thread, a relay unit per read)
    // instead of being broadcast: `serve --print`. Needs server.publish; not with a backplane.
    std::function<void(const relay_unit&)> sink;
    // Called with each line worth showing to an operator on stdout ("listening on HOST:PORT",
    // "metrics on http://HOST:PORT/metrics"), once it is true; null: not shown.
    std::function<void(std::string_view)> announce;
    // SIGHUP with --auth cert: reads the [permissions] table again (none: no table), for the
    // connections that follow; throws std::exception naming the file and what is wrong (the
    // old table stays). Null: the table is not reloaded.
    std::function<std::optional<std::map<std::string, std::string>>()> read_permissions;
};

struct node_result {
    // Why the node stopped early: a listen address that could not be bound (code() is e.g.
    // asio::error::address_in_use), or bad standard input (a framecast::errc). Empty: a
    // stop that was asked for, or the end of standard input.
    std::error_code error;
};

class node {
public:
    // `bp`: the backplane bridge (made by backplane::make_backplane), or null for a node alone.
    explicit node(node_options opts, std::unique_ptr<backplane::backplane> bp = nullptr);
    ~node();
    node(const node&) = delete;
    node& operator=(const node&) = delete;

    // Runs the whole lifecycle on the calling thread and returns when the node has stopped.
    // Logs what it does, and a summary at the end. Call once.
    node_result run();

    // Asks for a graceful stop, as the first signal would; thread-safe.
    void request_stop();

    struct impl;

private:
    std::unique_ptr<impl> impl_;
};

}  // namespace framecast::io
