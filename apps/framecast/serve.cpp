// framecast serve: the tutorial's streaming server (welcome, then "The time is ..." every 3 s),
// for many clients at once, with other sources, pub/sub, bounds on every buffer and a graceful
// shutdown.
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <algorithm>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "cli.hpp"
#include "metrics_http.hpp"
#include "framecast/backplane.hpp"
#include "framecast/io/metrics.hpp"
#include "framecast/io/server.hpp"
#include "framecast/io/sources.hpp"

namespace framecast::app {

namespace {

struct serve_config {
    std::vector<std::string> listen;
    std::string source = "time";
    double interval = 3.0;
    std::string welcome = "Welcome to the server!";
    bool publish = false;
    std::size_t header_size = default_header_size;
    std::uint64_t max_message = 1024 * 1024;
    std::size_t max_clients = 0;
    std::uint64_t client_buffer = 8 * 1024 * 1024;
    std::string slow_consumer = "disconnect";
    double idle_timeout = 30.0;
    double drain_timeout = 5.0;
    double backpressure = 2.0;
    std::uint32_t max_rate = 0;
    bool chat = false;
    std::size_t max_name = 64;
    bool unique_names = false;
    std::size_t history = 0;
    std::string metrics;
    std::string backplane;
    std::uint64_t backplane_retention = 100'000;
    std::size_t backplane_pending = 100'000;
    std::uint64_t backplane_pending_bytes = 256 * 1024 * 1024;
    bool backplane_time = false;
    int verbosity = 0;
};

std::chrono::milliseconds to_ms(double seconds) {
    return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0 + 0.5));
}

// Lets the server hold as many clients as the hard limit allows (Debian's default soft limit
// is 1024 descriptors).
void raise_fd_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) spdlog::debug("could not raise RLIMIT_NOFILE");
    }
}

std::string endpoint_text(const asio::ip::tcp::endpoint& ep) {
    if (ep.address().is_v6()) return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
    return ep.address().to_string() + ":" + std::to_string(ep.port());
}

exit_code run_serve(const serve_config& cfg) {
    setup_logging(cfg.verbosity);
    std::signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    io::server_options opts;
    opts.codec.header_size = cfg.header_size;
    // A header of H digits cannot announce more than 10^H - 1 bytes, in either direction.
    std::uint64_t header_capacity = 1;
    for (std::size_t i = 0; i < cfg.header_size && header_capacity < 10'000'000'000'000'000'000u; ++i) {
        header_capacity *= 10;
    }
    header_capacity -= 1;
    opts.codec.max_message = std::min(cfg.max_message, header_capacity);
    if (cfg.source == "time" && header_capacity < 64) {
        spdlog::error("--header-size {} cannot frame the time messages (about 30 bytes)",
                      cfg.header_size);
        return exit_code::usage;
    }
    opts.welcome = cfg.welcome;
    opts.publish = cfg.publish;
    opts.max_clients = cfg.max_clients;
    opts.client_buffer = cfg.client_buffer;
    opts.slow_consumer = cfg.slow_consumer == "drop-oldest" ? io::slow_consumer_policy::drop_oldest
                                                            : io::slow_consumer_policy::disconnect;
    opts.idle_timeout = to_ms(cfg.idle_timeout);
    opts.backpressure = to_ms(cfg.backpressure);
    opts.max_rate = cfg.max_rate;
    opts.chat.enabled = cfg.chat;
    opts.chat.max_name = static_cast<std::size_t>(std::min<std::uint64_t>(cfg.max_name, header_capacity));
    opts.chat.unique_names = cfg.unique_names;
    opts.chat.history = cfg.history;
    if (cfg.chat) {
        // Every frame a chat client receives is half of a (username, message) pair: anything
        // else on the wire would shift the pairing for the rest of the connection.
        if (!cfg.welcome.empty()) {
            spdlog::error("--chat sends no welcome (a chat client would read it as a username); "
                          "drop --welcome");
            return exit_code::usage;
        }
        if (cfg.source != "none") {
            spdlog::error("--chat streams no --source '{}' (a chat client would read its messages "
                          "as usernames); only clients talk in a chat room",
                          cfg.source);
            return exit_code::usage;
        }
        if (cfg.max_name == 0) {
            spdlog::error("--max-name must be at least 1");
            return exit_code::usage;
        }
        const auto pair = opts.chat.max_name + opts.codec.max_message + 2 * cfg.header_size;
        if (opts.client_buffer < pair) {
            spdlog::error("--client-buffer ({} bytes) must hold at least one largest relay "
                          "(--max-name {} + --max-message {} + two {}-byte headers)",
                          opts.client_buffer, opts.chat.max_name, opts.codec.max_message,
                          cfg.header_size);
            return exit_code::usage;
        }
    }
    if (opts.client_buffer < opts.codec.max_message + cfg.header_size) {
        spdlog::error("--client-buffer ({} bytes) must hold at least one largest message "
                      "(--max-message {} + {} header bytes)",
                      opts.client_buffer, opts.codec.max_message, cfg.header_size);
        return exit_code::usage;
    }
    if (!cfg.welcome.empty() && cfg.welcome.size() > opts.codec.max_message) {
        spdlog::error("--welcome is longer than --max-message or than --header-size can announce");
        return exit_code::usage;
    }

    asio::io_context io(1);
    io::server srv(io, opts);

    // The backplane: every message that would enter this node's broadcast goes to the shared
    // log instead, and comes back (from any node) through deliver, in the log's order.
    std::unique_ptr<backplane::backplane> bp;
    if (!cfg.backplane.empty()) {
        backplane::options bo;
        bo.retention = cfg.backplane_retention;
        bo.pending_limit = cfg.backplane_pending;
        bo.pending_bytes_limit = cfg.backplane_pending_bytes;
        try {
            bp = backplane::make_backplane(cfg.backplane, bo);
        } catch (const std::invalid_argument& e) {
            spdlog::error("--backplane: {}", e.what());
            return exit_code::usage;
        }
    }

    // Listen first: a taken port is an error before anything else starts.
    std::vector<asio::ip::tcp::endpoint> bound;
    auto listen_one = [&](const std::string& text) {
        auto ep = parse_endpoint(text);
        try {
            if (ep.host.empty() || ep.host == "*") {
                bound.push_back(srv.listen_any(ep.port));
                return;
            }
            error_code ec;
            auto addr = asio::ip::make_address(ep.host, ec);
            if (!ec) {
                bound.push_back(srv.listen({addr, ep.port}));
                return;
            }
            asio::ip::tcp::resolver resolver(io);
            auto results = resolver.resolve(ep.host, std::to_string(ep.port),
                                            asio::ip::tcp::resolver::passive);
            for (const auto& r : results) bound.push_back(srv.listen(r.endpoint()));
        } catch (const system_error& e) {
            throw system_error(e.code(), "cannot listen on " + ep.to_string());
        }
    };
    try {
        if (cfg.listen.empty()) {
            listen_one(":1243");
        } else {
            for (const auto& l : cfg.listen) listen_one(l);
        }
    } catch (const system_error& e) {
        spdlog::error("{}", e.what());
        return exit_code_for(e.code());
    }

    // Own messages handed to the backplane, and those seen coming back (both on io's thread):
    // at shutdown the node waits for the difference, so nothing it published is lost.
    std::uint64_t own_published = 0;
    std::uint64_t own_delivered = 0;
    if (bp) {
        srv.set_ingress([&](const io::relay_unit& unit, const io::session* origin) {
            ++own_published;
            bp->publish(unit.bytes, io::server::session_id(origin));
        });
    }

    exit_code result = exit_code::ok;
    std::optional<io::time_source> clock_source;
    std::optional<io::stdin_source> input_source;
    auto drain = to_ms(cfg.drain_timeout);
    auto stop_sources = [&] {
        if (clock_source) clock_source->stop();
        if (input_source) input_source->stop();
    };
    asio::steady_timer echo_timer(io);
    std::function<void()> await_echo;
    bool shutdown_started = false;
    auto shut_down = [&] {
        stop_sources();
        if (shutdown_started) return;
        shutdown_started = true;
        if (!bp) {
            srv.shutdown(drain, [&io] { io.stop(); });
            return;
        }
        // First let this node's own messages make the round trip through the backplane (at
        // most --drain-timeout), then flush the clients' queues with what is left of it.
        auto deadline = std::chrono::steady_clock::now() + drain;
        await_echo = [&, deadline] {
            auto now = std::chrono::steady_clock::now();
            auto s = bp->snapshot();
            if (own_delivered + s.dropped < own_published && now < deadline) {
                echo_timer.expires_after(std::chrono::milliseconds(10));
                echo_timer.async_wait([&await_echo](error_code ec) {
                    if (!ec) await_echo();
                });
                return;
            }
            if (own_delivered + s.dropped < own_published) {
                spdlog::warn("backplane: {} messages of this node did not come back within "
                             "--drain-timeout",
                             own_published - own_delivered - s.dropped);
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
            srv.shutdown(std::max(left, std::chrono::milliseconds(0)), [&io] { io.stop(); });
        };
        await_echo();
    };

    std::optional<asio::signal_set> signal_set(std::in_place, io, SIGINT, SIGTERM);
    auto& signals = *signal_set;
    int signal_count = 0;
    std::function<void(error_code, int)> on_signal = [&](error_code ec, int sig) {
        if (ec) return;
        if (++signal_count == 1) {
            spdlog::info("received signal {}: stopping (again to close at once)", sig);
            shut_down();
            signals.async_wait(on_signal);
        } else {
            srv.close_all("server stopping at once (second signal)");
            io.stop();
        }
    };
    signals.async_wait(on_signal);

    std::optional<metrics_endpoint> metrics;  // after srv: stops serving before srv goes
    if (!cfg.metrics.empty()) {
        try {
            metrics.emplace(cfg.metrics, io, [&srv, &bp] {
                auto m = io::snapshot_metrics(srv);
                if (bp) m.backplane = bp->snapshot();
                return m;
            });
        } catch (const std::exception& e) {
            spdlog::error("{}", e.what());
            return exit_code::failure;
        }
    }

    if (bp) {
        spdlog::info("backplane {}: node {}", bp->describe(), bp->node_id());
        const std::string own = bp->node_id();
        bp->start([&io, &srv, &own_delivered, own](backplane::message m) {
            // Counted here, on the backplane's thread: the entry's frames as a relay unit.
            auto unit = srv.relay_unit_of(std::move(m.framed));
            asio::post(io, [&srv, &own_delivered, own, m = std::move(m), unit = std::move(unit)] {
                const io::session* origin = nullptr;
                if (m.origin_node == own) {
                    ++own_delivered;
                    origin = srv.find_session(m.origin_client);
                }
                srv.broadcast(unit, origin);
            });
        });
    }
    srv.start();
    for (const auto& ep : bound) {
        std::printf("listening on %s\n", endpoint_text(ep).c_str());
        spdlog::info("listening on {}", endpoint_text(ep));
    }
    std::fflush(stdout);

    auto emit = [&srv](std::string_view payload) { srv.publish(payload); };
    if (cfg.source == "time") {
        // The clock is per node unless --backplane-time: every node has one, so sharing them
        // would multiply the ticks.
        auto tick = [&srv](std::string_view payload) { srv.broadcast(payload); };
        clock_source.emplace(io, to_ms(cfg.interval),
                             (!bp || cfg.backplane_time) ? std::function<void(std::string_view)>(emit)
                                                         : std::function<void(std::string_view)>(tick));
        clock_source->start();
    } else if (cfg.source == "stdin" || cfg.source == "stdin-framed") {
        auto fmt = cfg.source == "stdin" ? io::stdin_source::format::lines
                                         : io::stdin_source::format::framed;
        input_source.emplace(io, 0, fmt, opts.codec, io::relay_unit_bytes(opts),
                             [&srv](const io::relay_unit& unit) { srv.publish(unit); },
                             [&](error_code ec, const std::string& message) {
                                 if (ec) {
                                     spdlog::error("{}", message);
                                     result = exit_code_for(ec);
                                 } else {
                                     spdlog::info("end of input: flushing and exiting");
                                 }
                                 // End of input counts as the first signal: a signal now
                                 // closes at once instead of waiting out the drain.
                                 signal_count = std::max(signal_count, 1);
                                 shut_down();
                             });
        input_source->set_pacing({[&srv] { return srv.congested(); },
                                  [&srv](std::function<void()> fn) { srv.when_ready(std::move(fn)); }});
        input_source->start();
    }

    io.run();
    if (bp) {
        bp->stop(0);  // the round trip was awaited above; what is still pending is reported
        auto s = bp->snapshot();
        spdlog::info("backplane {}: {} published, {} delivered, {} dropped, {} duplicates "
                     "skipped, {} reconnects",
                     bp->describe(), s.published, s.delivered, s.dropped, s.duplicates,
                     s.reconnects);
    }
    // Past this point a signal changes nothing: do not let it kill the process on its way out
    // (destroying the signal_set restores the default action).
    signal_set.reset();
    std::signal(SIGINT, SIG_IGN);
    std::signal(SIGTERM, SIG_IGN);
    stop_sources();
    const auto& c = srv.counters();
    spdlog::info("served {} clients ({} rejected); {} messages broadcast, {} frames / {} bytes "
                 "written; {} in; {} bad input, {} idle timeouts, {} floods; slow consumers: {} "
                 "disconnected, {} frames dropped; backpressure: {} waits, {} clients left behind",
                 c.clients_accepted, c.clients_rejected, c.messages_broadcast, c.frames_out,
                 c.bytes_out, c.messages_in, c.decode_errors, c.idle_timeouts, c.floods,
                 c.slow_disconnects, c.slow_dropped_frames, c.backpressure_waits,
                 c.backpressure_timeouts);
    if (cfg.chat) {
        spdlog::info("chat: {} joined, {} closed for their username", c.chat_joins,
                     c.chat_names_rejected);
    }
    return result;
}

}  // namespace

command_runner register_serve(CLI::App& app) {
    auto cfg = std::make_shared<serve_config>();
    auto* cmd = app.add_subcommand(
        "serve",
        "Stream framed messages to every client that connects (the tutorial's server: a welcome, "
        "then 'The time is <unix time>' every 3 s).");
    cmd->add_option("-l,--listen", cfg->listen,
                    "Address to listen on, HOST:PORT or [IPv6]:PORT; repeatable. Port 0 picks a "
                    "free port. Each listener prints 'listening on HOST:PORT' on stdout.\n"
                    "Default: all interfaces, port 1243 ([::] dual-stack, or 0.0.0.0 without IPv6)")
        ->check(endpoint_validator());
    cmd->add_option("-s,--source", cfg->source,
                    "What to stream: 'time' (the tutorial's clock), 'stdin' (each input line is a "
                    "message; at end of input the queues are flushed and the server exits 0), "
                    "'stdin-framed' (the input is framed already, e.g. from framecast connect), "
                    "or 'none'. Default: time, or none with --publish or --chat")
        ->check(CLI::IsMember({"time", "stdin", "stdin-framed", "none"}));
    cmd->add_option("--interval", cfg->interval, "Seconds between time messages")
        ->default_val(cfg->interval)
        ->check(CLI::Range(0.001, 86400.0));
    cmd->add_option("--welcome", cfg->welcome,
                    "First message each client receives; an empty string sends none")
        ->default_val(cfg->welcome);
    cmd->add_flag("--publish", cfg->publish,
                  "Frames a client sends are broadcast to every other client (pub/sub); "
                  "without it, frames from clients are checked and discarded");
    cmd->add_option("--header-size", cfg->header_size, "Header length in bytes")
        ->default_val(cfg->header_size)
        ->check(CLI::Range(min_header_size, max_header_size));
    add_size_option(*cmd, "--max-message", cfg->max_message,
                    "Largest message a client (or stdin) may send; a client announcing more is "
                    "closed before its payload is read");
    cmd->add_option("--max-clients", cfg->max_clients,
                    "Clients connected at once; one more is accepted, logged and closed at once. "
                    "0: no limit beyond file descriptors")
        ->default_val(cfg->max_clients);
    add_size_option(*cmd, "--client-buffer", cfg->client_buffer,
                    "Bytes queued for one client at most; past it --slow-consumer applies");
    cmd->add_option("--slow-consumer", cfg->slow_consumer,
                    "When a client's queue is full: 'disconnect' it, or 'drop-oldest' whole frames "
                    "not yet being written (the client then misses messages)")
        ->default_val(cfg->slow_consumer)
        ->check(CLI::IsMember({"disconnect", "drop-oldest"}));
    cmd->add_option("--backpressure", cfg->backpressure,
                    "Seconds the stdin source and publishing clients may be held back by one "
                    "client whose queue is over half of --client-buffer (they wait until it is "
                    "down to a quarter); after that the client is left to --slow-consumer. "
                    "0: never wait (sources run at their own pace)")
        ->default_val(cfg->backpressure)
        ->check(CLI::Range(0.0, 1e6));
    cmd->add_option("--idle-timeout", cfg->idle_timeout,
                    "Seconds a client may spend in the middle of sending a frame before it is "
                    "closed (clients quiet between frames are fine); with --chat also the time "
                    "a client has to send its username. 0: never")
        ->default_val(cfg->idle_timeout)
        ->check(CLI::Range(0.0, 1e6));
    cmd->add_option("--drain-timeout", cfg->drain_timeout,
                    "On SIGINT/SIGTERM or end of stdin: seconds to flush queued messages before "
                    "closing the clients")
        ->default_val(cfg->drain_timeout)
        ->check(CLI::Range(0.0, 1e6));
    cmd->add_option("--max-rate", cfg->max_rate,
                    "Messages per second one client may send (bursts up to the same number); "
                    "above it the client is closed as a flood. 0: no limit")
        ->default_val(cfg->max_rate);
    auto* chat = cmd->add_flag(
        "--chat", cfg->chat,
        "Run a chat room (the tutorial series' protocol): a client's first frame is its username, "
        "each later frame a message relayed to every other client as two frames, the sender's "
        "username frame then the message frame, both as received. No welcome, no source; "
        "excludes --publish (one mode per server)");
    chat->excludes(cmd->get_option("--publish"));
    cmd->add_option("--max-name", cfg->max_name,
                    "--chat: longest username in bytes; a longer, empty or non-UTF-8 name closes "
                    "that client")
        ->default_val(cfg->max_name)
        ->needs(chat);
    cmd->add_flag("--unique-names", cfg->unique_names,
                  "--chat: a username already in use closes the newcomer (nothing is sent to it: "
                  "the protocol has no error frame)")
        ->needs(chat);
    cmd->add_option("--history", cfg->history,
                    "--chat: a newcomer first receives the last N messages (at most half of "
                    "--client-buffer bytes)")
        ->default_val(cfg->history)
        ->needs(chat);
    cmd->add_option("--backplane", cfg->backplane,
                    "Share one stream with other framecast nodes through a broker: "
                    "redis://HOST[:PORT][/KEY] (a Redis Stream at KEY, default 'framecast'). "
                    "Every message that enters this node's broadcast is appended there and "
                    "delivered back from it, so all clients on all nodes see one order. "
                    "See docs/backplane.md");
    cmd->add_option("--backplane-retention", cfg->backplane_retention,
                    "--backplane: entries the stream keeps (approximately); a node away longer "
                    "than this window misses what was trimmed")
        ->default_val(cfg->backplane_retention)
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40))
        ->needs("--backplane");
    cmd->add_option("--backplane-pending", cfg->backplane_pending,
                    "--backplane: messages held while the broker is unreachable or slow; beyond "
                    "it (or --backplane-pending-bytes) new ones are dropped and counted")
        ->default_val(cfg->backplane_pending)
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 32))
        ->needs("--backplane");
    add_size_option(*cmd, "--backplane-pending-bytes", cfg->backplane_pending_bytes,
                    "--backplane: bytes held while the broker is unreachable or slow")
        ->needs("--backplane");
    cmd->add_flag("--backplane-time", cfg->backplane_time,
                  "--backplane: the time source publishes through the backplane (one clock "
                  "for all nodes; every node that has one adds its ticks). Default: each node "
                  "sends its own ticks to its own clients only")
        ->needs("--backplane");
    add_metrics_option(*cmd, cfg->metrics);
    add_verbosity_flags(*cmd, cfg->verbosity);
    auto* source_opt = cmd->get_option("--source");
    auto* welcome_opt = cmd->get_option("--welcome");
    return [cfg, source_opt, welcome_opt] {
        if ((cfg->publish || cfg->chat) && source_opt->count() == 0) cfg->source = "none";
        if (cfg->chat && welcome_opt->count() == 0) cfg->welcome.clear();
        return run_serve(*cfg);
    };
}

}  // namespace framecast::app
