#include "framecast/io/node.hpp"

#include "framecast/io/endpoint.hpp"

#include <algorithm>
#include <csignal>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "framecast/io/metrics.hpp"
#include "framecast/io/sources.hpp"
#include "log_throttle.hpp"
#include "transport/tls.hpp"

namespace framecast::io {

using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

// Something that happens once (a stop asked for, the queues drained, the backplane echo caught
// up), awaited by one coroutine: a timer that never fires on its own, cancelled by set().
class event {
public:
    explicit event(asio::io_context& io) : timer_(io) {}
    void set() {
        set_ = true;
        timer_.cancel();
    }
    bool is_set() const noexcept { return set_; }
    // Returns once set() was called, or at `deadline` (see is_set()).
    asio::awaitable<void> wait(steady::time_point deadline) {
        if (set_) co_return;
        timer_.expires_at(deadline);
        co_await timer_.async_wait(use_nothrow);
    }
    asio::awaitable<void> wait() { return wait(steady::time_point::max()); }

private:
    asio::steady_timer timer_;
    bool set_ = false;
};

// Every endpoint `a` names, for binding: an address as is, a host name through the resolver.
std::vector<tcp::endpoint> endpoints_of(asio::io_context& io, const listen_address& a) {
    error_code ec;
    auto addr = asio::ip::make_address(a.host, ec);
    if (!ec) return {tcp::endpoint(addr, a.port)};
    tcp::resolver resolver(io);
    std::vector<tcp::endpoint> out;
    for (const auto& r : resolver.resolve(a.host, std::to_string(a.port), tcp::resolver::passive)) {
        out.push_back(r.endpoint());
    }
    return out;
}

}  // namespace

struct node::impl {
    node_options opts;
    asio::io_context io{1};  // first: outlives everything below that runs on it
    std::unique_ptr<backplane::backplane> bp;
    server srv;
    std::optional<http_server> metrics;
    std::optional<ws_gateway> ws;
    std::optional<time_source> clock_source;
    std::optional<stdin_source> input_source;
    asio::signal_set signals{io};
    asio::signal_set reload_signals{io};  // SIGHUP, with TLS: reload the certificate
    event stop_asked{io};
    event echo_caught_up{io};
    event drained{io};
    bool awaiting_echo = false;
    // Own messages handed to the backplane, and those seen coming back: at shutdown the node
    // waits for the difference, so nothing it published is lost.
    std::uint64_t own_published = 0;
    std::uint64_t own_delivered = 0;
    std::error_code error;
    steady::time_point started = steady::now();
    log_throttle reject_log;  // the backplane's thread only

    impl(node_options o, std::unique_ptr<backplane::backplane> b)
        : opts(std::move(o)), bp(std::move(b)), srv(io, opts.server) {}

    void announce(const std::string& line) {
        if (opts.announce) opts.announce(line);
    }

    // --- where messages enter: the few calls a change of the server's unit type touches ----
    void publish_text(std::string_view payload) { srv.publish(payload); }
    void broadcast_text(std::string_view payload) { srv.broadcast(payload); }
    void publish_unit(const relay_unit& unit) { srv.publish(unit); }
    void broadcast_unit(const relay_unit& unit, const session* origin, std::uint64_t offset = 0,
                        std::uint64_t channel_offset = 0) {
        srv.broadcast(unit, origin, offset, channel_offset);
    }

    // --- start ---------------------------------------------------------------------------
    std::error_code bind_listeners(std::vector<tcp::endpoint>& bound) {
        std::vector<listen_address> wanted = opts.listen;
        if (wanted.empty()) wanted.push_back({"", node_options::default_port});
        for (const auto& a : wanted) {
            try {
                if (a.host.empty() || a.host == "*") {
                    bound.push_back(srv.listen_any(a.port));
                    continue;
                }
                for (const auto& ep : endpoints_of(io, a)) bound.push_back(srv.listen(ep));
            } catch (const system_error& e) {
                spdlog::error("cannot listen on {}: {}", format_host_port(a.host, a.port), e.code().message());
                return e.code();
            }
        }
        return {};
    }

    std::error_code open_metrics() {
        listen_address a = *opts.metrics;
        if (a.host.empty()) a.host = "127.0.0.1";  // metrics stay on loopback unless asked
        metrics.emplace(io, [this](std::string_view path) { return answer_http(path); },
                        opts.metrics_limits);
        tcp::endpoint ep;
        try {
            auto eps = endpoints_of(io, a);
            if (eps.empty()) throw system_error(asio::error::host_not_found);
            ep = metrics->listen(eps.front());
        } catch (const system_error& e) {
            spdlog::error("cannot serve metrics on {}: {}", format_host_port(a.host, a.port), e.code().message());
            metrics.reset();
            return e.code();
        }
        metrics->start();
        auto shown = format_endpoint(ep);
        announce("metrics on http://" + shown + "/metrics");
        spdlog::info("metrics on http://{}/metrics, health check on /healthz", shown);
        return {};
    }

    std::error_code open_ws() {
        listen_address a = *opts.ws;
        const auto& s = opts.server;
        ws_page_info page{s.chat.enabled ? "chat" : s.publish ? "publish" : "stream",
                          s.codec.max_message, s.chat.enabled ? s.chat.max_name : 0, opts.version};
        ws_options wo = opts.ws_opts;
        if (wo.wss) {
            try {
                wo.tls = make_tls_server_context(s.tls);
            } catch (const std::exception& e) {
                spdlog::error("cannot serve wss://: {}", e.what());
                return make_error_code(std::errc::invalid_argument);
            }
        }
        ws.emplace(io, std::move(wo), s.codec, std::move(page),
                   [this](std::unique_ptr<transport> t, const asio::ip::address& from) {
                       srv.accept(std::move(t), &from);
                   },
                   [this] { return s_has_room(); });
        tcp::endpoint ep;
        try {
            auto eps = endpoints_of(io, a.host.empty() ? listen_address{"::", a.port} : a);
            if (eps.empty()) throw system_error(asio::error::host_not_found);
            ep = ws->listen(eps.front());
        } catch (const system_error& e) {
            spdlog::error("cannot serve websocket on {}: {}", format_host_port(a.host, a.port), e.code().message());
            ws.reset();
            return e.code();
        }
        ws->start();
        auto shown = format_endpoint(ep);
        const bool tls = opts.ws_opts.wss;
        announce(std::string(tls ? "websocket on wss://" : "websocket on ws://") + shown + "/");
        spdlog::info("websocket on {}://{}/ (live page at {}://{}/)", tls ? "wss" : "ws", shown,
                     tls ? "https" : "http", shown);
        return {};
    }
    bool s_has_room() const {
        const auto max = opts.server.max_clients;
        return max == 0 || srv.client_count() < max;
    }

    http_response answer_http(std::string_view path) {
        if (path == "/metrics") {
            auto m = snapshot_metrics(srv);
            m.uptime_seconds = std::chrono::duration<double>(steady::now() - started).count();
            m.version = opts.version;
            if (bp) m.backplane = bp->snapshot();
            return {200, "text/plain; version=0.0.4; charset=utf-8", render_prometheus(m)};
        }
        // Answered on the server's own thread: that it answers at all says the loop runs.
        if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
        return {404, "text/plain; charset=utf-8", "not found\n"};
    }

    // Every message that would enter this node's broadcast goes to the shared log instead, and
    // comes back (from any node) through deliver, in the log's order.
    // A shared log that cannot be numbered for --resume is an error at start (logged).
    std::error_code bridge_backplane() {
        spdlog::info("backplane {}: node {}", bp->describe(), bp->node_id());
        srv.set_ingress([this](const relay_unit& unit, const session* origin) {
            ++own_published;
            const auto id = server::session_id(origin);
            if (auto numbered = srv.take_publisher_unit(origin)) {
                if (!bp->publish_numbered(unit.bytes, id, unit.messages, std::move(*numbered))) {
                    srv.publisher_receipt({.what = backplane::publisher_receipt::kind::failed,
                                           .origin_client = id,
                                           .why = "the backplane's pending queue is full"});
                }
            } else {
                bp->publish(unit.bytes, id, unit.messages);
            }
            check_echo();  // a full pending queue drops it at once
        });
        if (opts.server.publish_acks.enabled) bridge_publishers();
        srv.count_external_memory(bp->pending_bytes_counter());
        if (opts.server.resume.enabled) bridge_history();
        try {
            start_backplane();
        } catch (const std::runtime_error& e) {
            spdlog::error("--resume --backplane: {}", e.what());
            return make_error_code(std::errc::invalid_argument);
        }
        return {};
    }

    // Publish acks across nodes: the shared log keeps each publisher's last number (docs/
    // resume.md, "Several nodes"); its answers come back on the backplane's thread.
    void bridge_publishers() {
        srv.set_publish_log([this](std::uint64_t id, std::string publisher, std::uint64_t first) {
            bp->attach_publisher(id, std::move(publisher), first);
        });
        bp->set_receipts([this](backplane::publisher_receipt r) {
            asio::post(io, [this, r = std::move(r)] {
                // A unit the log had whole never comes back: the shutdown's echo wait must
                // not wait for it.
                if (r.what == backplane::publisher_receipt::kind::handled && !r.entry) {
                    ++own_delivered;
                }
                srv.publisher_receipt(r);
                check_echo();
            });
        });
    }

    // --resume: a client older than this node's history replays from the shared log. Read on
    // the backplane's thread, checked there like a live entry (Redis is not trusted), and
    // handed to the io thread.
    void bridge_history() {
        srv.set_history_fetch([this](const std::string& epoch, std::uint64_t from,
                                     std::function<void(server::history_piece)> done) {
            using piece = server::history_piece;
            bp->read_history(epoch, from, piece::max_entries, piece::max_bytes,
                             [this, done = std::move(done)](backplane::history_range h) {
                piece p;
                p.failed = h.failed;
                for (auto& m : h.entries) {
                    p.read_to = std::max(p.read_to, m.offset + 1);
                    std::string problem;
                    auto unit = srv.checked_unit(std::move(m.framed), problem);
                    if (!unit) {
                        bp->reject();  // a hole: the client is told by the next position
                        continue;
                    }
                    p.units.emplace_back(m.offset, std::move(unit));
                    p.channel_offsets.push_back(m.channel_offset);
                }
                if (h.failed) spdlog::warn("backplane {}: cannot read the stream's past for a "
                                           "resuming client: {}", bp->describe(), h.why);
                asio::post(io, [done, p = std::move(p)]() mutable { done(std::move(p)); });
            });
        });
    }

    void start_backplane() {
        bp->start([this, own = bp->node_id()](backplane::message m) {
            using kind = backplane::message::kind;
            if (m.what == kind::channel) {  // --channels --resume: a channel's last offset
                asio::post(io, [this, channel = std::move(m.channel), last = m.offset] {
                    if (!srv.resume_channel(channel, last)) bp->reject();
                });
                return;
            }
            if (m.what == kind::epoch) {  // --resume: the shared log's history (docs/resume.md)
                asio::post(io, [this, epoch = std::move(m.epoch), next = m.offset,
                                follows = m.history_follows] {
                    srv.resume_epoch(epoch, next, follows);
                });
                return;
            }
            // Checked and counted here, on the backplane's thread, with the codec's own
            // decoder: the io thread only queues the unit. Redis is not trusted: an entry
            // anyone could XADD must not break the clients' framing.
            std::string problem;
            auto unit = srv.checked_unit(std::move(m.framed), problem);
            if (!unit) {
                bp->reject();
                std::string more;
                if (reject_log.allow(more)) {
                    spdlog::warn("backplane {}: entry from node '{}' rejected: {}{}",
                                 bp->describe(), escape_controls(m.origin_node, true), problem,
                                 more);
                }
                return;
            }
            asio::post(io, [this, own, m = std::move(m), unit = std::move(unit)] {
                if (m.what == kind::history) {
                    return srv.resume_history(unit, m.offset, m.channel_offset);
                }
                const session* origin = nullptr;
                if (m.origin_node == own) {
                    ++own_delivered;
                    origin = srv.find_session(m.origin_client);
                }
                broadcast_unit(unit, origin, m.offset, m.channel_offset);
                check_echo();
            });
        });
    }

    void check_echo() {
        if (awaiting_echo && echo_missing() == 0) echo_caught_up.set();
    }
    std::uint64_t echo_missing() const {
        auto back = own_delivered + bp->snapshot().dropped;
        return back >= own_published ? 0 : own_published - back;
    }

    void start_source() {
        if (opts.source == source_kind::time) {
            // The clock is per node unless backplane_time: every node has one, so sharing them
            // would multiply the ticks.
            // With --resume every message needs the shared log's offset: the clock is shared.
            bool shared = !bp || opts.backplane_time || opts.server.resume.enabled;
            clock_source.emplace(io, opts.interval, [this, shared](std::string_view payload) {
                if (shared) publish_text(payload);
                else broadcast_text(payload);
            });
            clock_source->start();
        } else if (opts.source == source_kind::stdin_lines || opts.source == source_kind::stdin_framed) {
            auto fmt = opts.source == source_kind::stdin_lines ? stdin_source::format::lines
                                                                : stdin_source::format::framed;
            input_source.emplace(
                io, opts.stdin_fd, fmt, opts.server.codec, relay_unit_bytes(opts.server),
                [this](const relay_unit& unit) { publish_unit(unit); },
                [this](error_code ec, const std::string& message) { on_input_end(ec, message); });
            input_source->set_pacing({[this] { return srv.congested(); },
                                      [this](std::function<void()> fn) { srv.when_ready(std::move(fn)); }});
            input_source->start();
        }
    }

    // Starts the source once `wait_for` clients are connected (polled: a client's arrival has no
    // hook here, and 10 ms is nothing beside a person or a script starting its subscribers).
    asio::awaitable<void> start_source_when_subscribed() {
        spdlog::info("waiting for {} client{} before starting the source", opts.wait_for,
                     opts.wait_for == 1 ? "" : "s");
        asio::steady_timer timer(io);
        while (srv.client_count() < opts.wait_for) {
            if (stop_asked.is_set()) co_return;
            timer.expires_after(std::chrono::milliseconds(10));
            co_await timer.async_wait(use_nothrow);
        }
        if (stop_asked.is_set()) co_return;
        spdlog::info("{} client{} connected: starting the source", srv.client_count(),
                     srv.client_count() == 1 ? "" : "s");
        start_source();
    }

    // End of input counts as the first signal: a signal now closes at once.
    void on_input_end(error_code ec, const std::string& message) {
        if (ec) {
            spdlog::error("{}", message);
            if (!error) error = ec;
        } else {
            spdlog::info("end of input: flushing and exiting");
        }
        stop_asked.set();
    }

    void stop_sources() {
        if (clock_source) clock_source->stop();
        if (input_source) input_source->stop();
    }

    // --- the lifecycle ---------------------------------------------------------------------
    asio::awaitable<void> lifecycle() {
        co_await stop_asked.wait();
        stop_sources();
        if (ws) ws->stop();
        const auto deadline = steady::now() + opts.drain_timeout;
        if (bp) {
            // First let this node's own messages make the round trip through the backplane
            // (until `deadline`); the clients' queues are flushed with what is left of it.
            awaiting_echo = true;
            check_echo();
            co_await echo_caught_up.wait(deadline);
            awaiting_echo = false;
            report_echo();
        }
        // Rounded up: without a backplane nothing ran in between, and the drain is the whole timeout.
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now());
        srv.shutdown(std::max(left, std::chrono::milliseconds(0)), [this] { drained.set(); });
        co_await drained.wait();
        // A WebSocket client's last messages are in this process, not in the kernel: let them go.
        if (ws) co_await ws->flushed(deadline);
        finish();
    }

    void report_echo() const {
        if (auto missing = echo_missing()) {
            spdlog::warn("backplane: {} messages of this node did not come back within the "
                         "drain timeout",
                         missing);
        }
    }

    asio::awaitable<void> watch_signals() {
        for (;;) {
            auto [ec, sig] = co_await signals.async_wait(use_nothrow);
            if (ec) co_return;
            if (!stop_asked.is_set()) {
                spdlog::info("received signal {}: stopping (again to close at once)", sig);
                stop_asked.set();
                continue;
            }
            srv.close_all("server stopping at once (second signal)");
            finish();
            co_return;
        }
    }

    asio::awaitable<void> watch_reload() {
        for (;;) {
            auto [ec, sig] = co_await reload_signals.async_wait(use_nothrow);
            if (ec) co_return;
            if (opts.server.tls.enabled()) {
                if (auto why = srv.reload_tls(); !why.empty()) {
                    spdlog::error("SIGHUP: TLS not reloaded, keeping the previous certificate: {}",
                                  why);
                } else {
                    spdlog::info("SIGHUP: TLS certificate reloaded; new connections use it");
                }
            }
            if (ws && opts.ws_opts.wss) reload_wss();
            if (opts.server.auth.cert && opts.read_permissions) reload_permissions();
        }
    }

    // --auth cert: the [permissions] table, for the connections that follow (the connected
    // clients keep what they were admitted with).
    void reload_permissions() {
        std::string why;
        std::size_t entries = 0;
        try {
            auto table = opts.read_permissions();
            entries = table ? table->size() : 0;
            why = srv.reload_permissions(std::move(table));
        } catch (const std::exception& e) {
            why = e.what();
        }
        if (!why.empty()) {
            spdlog::error("SIGHUP: [permissions] not reloaded, keeping the previous table: {}", why);
        } else {
            spdlog::info("SIGHUP: [permissions] reloaded ({} entries); new connections use it",
                         entries);
        }
    }

    // The wss:// listener's certificate, from the same files as the TCP listener's.
    void reload_wss() {
        try {
            ws->reload_tls(make_tls_server_context(opts.server.tls));
            spdlog::info("SIGHUP: wss:// certificate reloaded; new WebSocket connections use it");
        } catch (const std::exception& e) {
            spdlog::error("SIGHUP: wss:// certificate not reloaded, keeping the previous one: {}",
                          e.what());
        }
    }

    void finish() {
        error_code ignored;
        signals.cancel(ignored);
        reload_signals.cancel(ignored);
        if (metrics) metrics->stop();
        if (ws) ws->stop();
        io.stop();
    }

    void summarize() const {
        if (bp) {
            auto s = bp->snapshot();
            spdlog::info("backplane {}: {} published, {} delivered, {} dropped, {} duplicates "
                         "skipped, {} reconnects",
                         bp->describe(), s.published, s.delivered, s.dropped, s.duplicates,
                         s.reconnects);
        }
        const auto& c = srv.counters();
        spdlog::info("served {} clients ({} rejected); {} messages broadcast, {} frames / {} bytes "
                     "written; {} in; {} bad input, {} idle timeouts, {} floods; slow consumers: {} "
                     "disconnected, {} frames dropped; backpressure: {} waits, {} clients left behind",
                     c.clients_accepted, c.clients_rejected, c.messages_broadcast, c.frames_out,
                     c.bytes_out, c.messages_in, c.decode_errors, c.idle_timeouts, c.floods,
                     c.slow_disconnects, c.slow_dropped_frames, c.backpressure_waits,
                     c.backpressure_timeouts);
        if (opts.server.chat.enabled) {
            spdlog::info("chat: {} joined, {} closed for their username", c.chat_joins,
                         c.chat_names_rejected);
        }
    }

    node_result run() {
        // Listen first: a taken port is an error before anything else starts.
        std::vector<tcp::endpoint> bound;
        if (auto ec = bind_listeners(bound)) return {ec};
        if (opts.handle_signals) {
            signals.add(SIGINT);
            signals.add(SIGTERM);
            asio::co_spawn(io, watch_signals(), asio::detached);
            if (opts.server.tls.enabled() || opts.ws_opts.wss) {
                reload_signals.add(SIGHUP);
                asio::co_spawn(io, watch_reload(), asio::detached);
            }
        }
        if (opts.metrics) {
            if (auto ec = open_metrics()) return {ec};
        }
        if (opts.ws) {
            if (auto ec = open_ws()) return {ec};
        }
        if (bp) {
            if (auto ec = bridge_backplane()) return {ec};
        } else if (opts.sink) {
            srv.set_ingress([this](const relay_unit& unit, const session*) { opts.sink(unit); });
        }
        srv.start();
        for (const auto& ep : bound) {
            announce("listening on " + format_endpoint(ep));
            spdlog::info("listening on {}", format_endpoint(ep));
        }
        if (opts.wait_for > 0 && opts.source != source_kind::none) {
            asio::co_spawn(io, start_source_when_subscribed(), asio::detached);
        } else {
            start_source();
        }
        asio::co_spawn(io, lifecycle(), asio::detached);
        io.run();
        if (bp) bp->stop(0);  // the round trip was awaited above; what is still pending is reported
        if (opts.handle_signals) {
            // Past this point a signal changes nothing: do not let it kill the process on its
            // way out (removing the signal_set's handlers restores the default action).
            error_code ignored;
            signals.clear(ignored);
            reload_signals.clear(ignored);
            std::signal(SIGINT, SIG_IGN);
            std::signal(SIGTERM, SIG_IGN);
        }
        stop_sources();
        summarize();
        return {error};
    }
};

node::node(node_options opts, std::unique_ptr<backplane::backplane> bp)
    : impl_(std::make_unique<impl>(std::move(opts), std::move(bp))) {}

node::~node() = default;

node_result node::run() { return impl_->run(); }

void node::request_stop() {
    asio::post(impl_->io, [i = impl_.get()] { i->stop_asked.set(); });
}

}  // namespace framecast::io
