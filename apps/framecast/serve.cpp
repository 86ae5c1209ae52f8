// framecast serve: the tutorial's streaming server (welcome, then "The time is ..." every 3 s),
// for many clients at once, with other sources, pub/sub, bounds on every buffer and a graceful
// shutdown. The work is the library's io::node; this file maps the command line onto its
// options (whose defaults are the ones shown in --help) and its result onto an exit code.
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <algorithm>
#include <optional>
#include <stdexcept>

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli.hpp"
#include "config_file.hpp"
#include "framecast/backplane.hpp"
#include "framecast/io/node.hpp"
#include "print.hpp"

namespace framecast::app {

namespace {

// What the command line sets: the library's own option structs, plus the few texts mapped
// onto them once parsed.
struct serve_config {
    io::node_options node;
    backplane::options backplane;
    std::vector<std::string> listen;
    std::string metrics;
    std::string ws;
    std::string backplane_url;
    std::string source = "time";  // as written, for messages
    std::string auth_mode;        // --auth: "jwt", "cert" or empty
    bool print = false;
    std::string output = "lines";
    int verbosity = 0;
};

std::chrono::milliseconds to_ms(double seconds) {
    return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0 + 0.5));
}

// Binds `name`, given in seconds, to a millisecond field; its current value is the default.
CLI::Option* add_seconds_option(CLI::App& cmd, const std::string& name,
                                std::chrono::milliseconds& field, const std::string& help) {
    return cmd.add_option_function<double>(name, [&field](double s) { field = to_ms(s); }, help)
        ->transform(number_validator())
        ->default_str(fmt::format("{}", static_cast<double>(field.count()) / 1000.0));
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

io::listen_address to_listen_address(const std::string& text) {
    auto ep = parse_endpoint(text);
    return {ep.host, ep.port};
}


// A header of H digits cannot announce more than 10^H - 1 bytes, in either direction.
std::uint64_t header_capacity(std::size_t header_size) {
    std::uint64_t capacity = 1;
    for (std::size_t i = 0; i < header_size && capacity < 10'000'000'000'000'000'000u; ++i) {
        capacity *= 10;
    }
    return capacity - 1;
}

// Chat mode: every frame a chat client receives is half of a (username, message) pair, so
// anything else on the wire would shift the pairing for the rest of the connection.
bool check_chat(const serve_config& cfg, bool source_given) {
    const auto& s = cfg.node.server;
    if (!s.welcome.empty()) {
        spdlog::error("--chat sends no welcome (a chat client would read it as a username); "
                      "drop --welcome");
        return false;
    }
    if (source_given && cfg.node.source != io::source_kind::none) {
        spdlog::error("--chat streams no --source '{}' (a chat client would read its messages "
                      "as usernames); only clients talk in a chat room",
                      cfg.source);
        return false;
    }
    if (s.chat.max_name == 0) {
        spdlog::error("--max-name must be at least 1");
        return false;
    }
    const auto pair = s.chat.max_name + s.codec.max_message + 2 * s.codec.header_size;
    if (s.client_buffer < pair) {
        spdlog::error("--client-buffer ({} bytes) must hold at least one largest relay "
                      "(--max-name {} + --max-message {} + two {}-byte headers)",
                      s.client_buffer, s.chat.max_name, s.codec.max_message, s.codec.header_size);
        return false;
    }
    return true;
}

// Channels mode: every frame a client receives is half of a (channel, payload) pair.
bool check_channels(const serve_config& cfg, bool source_given) {
    const auto& s = cfg.node.server;
    if (!s.welcome.empty()) {
        spdlog::error("--channels sends no welcome (a client would read it as a channel name); "
                      "drop --welcome");
        return false;
    }
    if (source_given && cfg.node.source != io::source_kind::none) {
        spdlog::error("--channels streams no --source '{}'; clients publish to channels",
                      cfg.source);
        return false;
    }
    const auto& l = s.channels.limits;
    if (l.max_name == 0 || l.max_tokens == 0) {
        spdlog::error("--max-channel-name and --max-tokens must be at least 1");
        return false;
    }
    if (s.codec.max_message < l.max_name + 6) {
        spdlog::error("--max-message ({}) must hold a command naming the longest channel "
                      "('UNSUB ' + --max-channel-name {})",
                      s.codec.max_message, l.max_name);
        return false;
    }
    return true;
}

// Clamps what the header size cannot announce, and checks what cannot work together.
bool settle_options(serve_config& cfg, bool source_given) {
    auto& s = cfg.node.server;
    const auto capacity = header_capacity(s.codec.header_size);
    s.codec.max_message = std::min(s.codec.max_message, capacity);
    s.chat.max_name = static_cast<std::size_t>(std::min<std::uint64_t>(s.chat.max_name, capacity));
    if (cfg.node.source == io::source_kind::time && capacity < 64) {
        spdlog::error("--header-size {} cannot frame the time messages (about 30 bytes)",
                      s.codec.header_size);
        return false;
    }
    if (s.chat.enabled && !check_chat(cfg, source_given)) return false;
    if (s.channels.enabled && !check_channels(cfg, source_given)) return false;
    if (s.publish_acks.enabled && !s.publish && !s.channels.enabled) {
        spdlog::error("--publish-acks needs clients that publish: add --publish or --channels");
        return false;
    }
    if (s.client_buffer < s.codec.max_message + s.codec.header_size) {
        spdlog::error("--client-buffer ({} bytes) must hold at least one largest message "
                      "(--max-message {} + {} header bytes)",
                      s.client_buffer, s.codec.max_message, s.codec.header_size);
        return false;
    }
    if (!s.welcome.empty() && s.welcome.size() > s.codec.max_message) {
        spdlog::error("--welcome is longer than --max-message or than --header-size can announce");
        return false;
    }
    return true;
}

// The default memory limit: 1 GiB, or half of the machine's memory when that is less.
std::size_t default_memory_limit(std::size_t wanted) {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) return wanted;
    return std::min(wanted, static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) / 2);
}

bool check_auth(serve_config& cfg, const toml_config* config);

exit_code run_serve(serve_config& cfg, bool source_given, const toml_config* config) {
    setup_logging(cfg.verbosity);
    std::signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (!settle_options(cfg, source_given) || !check_auth(cfg, config)) return exit_code::usage;

    for (const auto& l : cfg.listen) cfg.node.listen.push_back(to_listen_address(l));
    if (!cfg.metrics.empty()) cfg.node.metrics = to_listen_address(cfg.metrics);
    if (!cfg.ws.empty()) cfg.node.ws = to_listen_address(cfg.ws);
    cfg.node.version = FRAMECAST_VERSION;
    // With --print stdout is the data: "listening on ..." goes to stderr. When stdout and the
    // plain log are the same terminal, the log line says it already: no second copy.
    const bool shown_by_log = cfg.verbosity >= 0 && plain_terminal_logs() &&
                              (cfg.print || ::isatty(STDOUT_FILENO) != 0);
    if (!shown_by_log) cfg.node.announce = [out = cfg.print ? stderr : stdout](std::string_view line) {
        std::fprintf(out, "%.*s\n", static_cast<int>(line.size()), line.data());
        std::fflush(out);
    };
    if (cfg.print) cfg.node.sink = make_printer(cfg.output, cfg.node.server.codec);
    std::unique_ptr<backplane::backplane> bp;
    if (!cfg.backplane_url.empty()) {
        // --resume: the shared log numbers the messages, and a node starts with its recent
        // entries as history (docs/resume.md, "Several nodes").
        const auto& r = cfg.node.server.resume;
        cfg.backplane.offsets = r.enabled;
        cfg.backplane.history_messages = r.history_messages;
        cfg.backplane.history_bytes = r.history_bytes;
        // --channels: every channel numbers its messages in the log too.
        if (r.enabled && cfg.node.server.channels.enabled) {
            cfg.backplane.channel_header = cfg.node.server.codec.header_size;
            cfg.backplane.max_channels = r.idle_channels;
            // A node starts with as much as a running one holds: all channels' bound.
            cfg.backplane.history_messages = r.channel_total_messages;
        }
        // --publish-acks: the shared log keeps the publishers' numbers, with the same bounds.
        const auto& p = cfg.node.server.publish_acks;
        cfg.backplane.publisher_expiry_ms = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(p.expiry).count());
        cfg.backplane.max_publishers = p.max_publishers;
        try {
            bp = backplane::make_backplane(cfg.backplane_url, cfg.backplane);
        } catch (const std::invalid_argument& e) {
            spdlog::error("--backplane: {}", e.what());
            return exit_code::usage;
        }
    }
    std::optional<io::node> node;
    try {
        node.emplace(std::move(cfg.node), std::move(bp));
    } catch (const std::runtime_error& e) {  // a TLS certificate, TLS or JWT key that does not load
        spdlog::error("{}", e.what());
        return exit_code::usage;
    }
    return exit_code_for(node->run().error);
}

void add_stream_options(CLI::App& cmd, serve_config& cfg) {
    auto& n = cfg.node;
    cmd.add_option("-l,--listen", cfg.listen,
                   "Address to listen on, HOST:PORT or [IPv6]:PORT; repeatable. Port 0 picks a "
                   "free port. Each listener prints 'listening on HOST:PORT' on stdout.\n"
                   "Default: all interfaces, port 1243 ([::] dual-stack, or 0.0.0.0 without IPv6)")
        ->check(endpoint_validator());
    cmd.add_option_function<std::string>(
           "-s,--source",
           [&n, &cfg](const std::string& s) {
               cfg.source = s;
               n.source = s == "time"    ? io::source_kind::time
                          : s == "stdin" ? io::source_kind::stdin_lines
                          : s == "none"  ? io::source_kind::none
                                         : io::source_kind::stdin_framed;
           },
           "What to stream: 'time' (the tutorial's clock), 'stdin' (each input line is a "
           "message; at end of input the queues are flushed and the server exits 0), "
           "'stdin-framed' (the input is framed already, e.g. from framecast connect), "
           "or 'none'. Default: time, or none with --publish or --chat")
        ->check(CLI::IsMember({"time", "stdin", "stdin-framed", "none"}));
    cmd.add_option("--wait-for", n.wait_for,
                   "Start the source (stdin or the clock) only once N clients are connected, so "
                   "that a short input is not streamed to nobody. 0: at once")
        ->default_val(n.wait_for);
    add_seconds_option(cmd, "--interval", n.interval, "Seconds between time messages")
        ->check(CLI::Range(0.001, 86400.0));
    cmd.add_option("--welcome", n.server.welcome,
                   "First message each client receives; an empty string sends none. Default: "
                   "'Welcome to the server!' with --source time, none with any other source")
        ->default_val(n.server.welcome);
    cmd.add_flag("--publish", n.server.publish,
                 "Frames a client sends are broadcast to every other client (pub/sub); "
                 "without it, frames from clients are checked and discarded");
}

void add_limit_options(CLI::App& cmd, serve_config& cfg) {
    auto& s = cfg.node.server;
    cmd.add_option("--header-size", s.codec.header_size, "Header length in bytes")
        ->default_val(s.codec.header_size)
        ->check(CLI::Range(min_header_size, max_header_size));
    add_size_option(cmd, "--max-message", s.codec.max_message,
                    "Largest message a client (or stdin) may send; a client announcing more is "
                    "closed before its payload is read");
    cmd.add_option("--max-clients", s.max_clients,
                   "Clients connected at once; one more is accepted, logged and closed at once. "
                   "0: no limit beyond file descriptors")
        ->default_val(s.max_clients);
    cmd.add_option("--max-per-address", s.max_per_address,
                   "Clients connected at once from one IP address (an IPv6 /64 counts as one); "
                   "one more is closed at once. 0: no limit")
        ->default_val(s.max_per_address);
    add_size_option(cmd, "--memory-limit", s.memory_limit,
                    "Bytes the whole server may hold for its clients (partial inbound frames, "
                    "outbound queues, history, pending backplane appends). At it, clients "
                    "holding partial frames are not read, --slow-consumer is applied to the "
                    "largest queues first and new connections are refused. Default: 1GiB, or "
                    "half the machine's memory if less. 0: no limit (see docs/security.md)");
    add_size_option(cmd, "--min-inbound-rate", s.min_inbound_rate,
                    "Bytes per second a client in the middle of sending a frame must keep up, "
                    "measured over --min-inbound-window; a slower one is closed (slowloris). 0: "
                    "no minimum");
    add_seconds_option(cmd, "--min-inbound-window", s.min_inbound_window,
                       "Seconds over which --min-inbound-rate is measured")
        ->check(CLI::Range(0.1, 3600.0));
    add_size_option(cmd, "--client-buffer", s.client_buffer,
                    "Bytes queued for one client at most; past it --slow-consumer applies");
    cmd.add_option_function<std::string>(
           "--slow-consumer",
           [&s](const std::string& v) {
               s.slow_consumer = v == "drop-oldest" ? io::slow_consumer_policy::drop_oldest
                                                    : io::slow_consumer_policy::disconnect;
           },
           "When a client's queue is full: 'disconnect' it, or 'drop-oldest' whole frames "
           "not yet being written (the client then misses messages)")
        ->default_str(s.slow_consumer == io::slow_consumer_policy::drop_oldest ? "drop-oldest"
                                                                               : "disconnect")
        ->check(CLI::IsMember({"disconnect", "drop-oldest"}));
    add_seconds_option(cmd, "--backpressure", s.backpressure,
                       "Seconds the stdin source and publishing clients may be held back by one "
                       "client whose queue is over half of --client-buffer (they wait until it is "
                       "down to a quarter); after that the client is left to --slow-consumer. "
                       "0: never wait (sources run at their own pace)")
        ->check(CLI::Range(0.0, 1e6));
    add_seconds_option(cmd, "--idle-timeout", s.idle_timeout,
                       "Seconds a client may spend in the middle of sending a frame before it is "
                       "closed (clients quiet between frames are fine); with --chat also the time "
                       "a client has to send its username. 0: never")
        ->check(CLI::Range(0.0, 1e6));
    add_seconds_option(cmd, "--drain-timeout", cfg.node.drain_timeout,
                       "On SIGINT/SIGTERM or end of stdin: seconds to flush queued messages before "
                       "closing the clients")
        ->check(CLI::Range(0.0, 1e6));
    cmd.add_option("--max-rate", s.max_rate,
                   "Messages per second one client may send (bursts up to the same number); "
                   "above it the client is closed as a flood. The default is far above any "
                   "honest client and stops an empty-frame flood. 0: no limit")
        ->default_val(s.max_rate);
    add_size_option(cmd, "--max-rate-bytes", s.max_rate_bytes,
                    "Bytes per second one client may send (bursts up to the same number); above "
                    "it the client is closed as a flood. 0: no limit");
}

void add_chat_options(CLI::App& cmd, serve_config& cfg) {
    auto& c = cfg.node.server.chat;
    auto* chat = cmd.add_flag(
        "--chat", c.enabled,
        "Run a chat room (the tutorial series' protocol): a client's first frame is its username, "
        "each later frame a message relayed to every other client as two frames, the sender's "
        "username frame then the message frame, both as received. No welcome, no source; "
        "excludes --publish (one mode per server)");
    chat->excludes(cmd.get_option("--publish"));
    cmd.add_option("--max-name", c.max_name,
                   "--chat: longest username in bytes; a longer, empty or non-UTF-8 name closes "
                   "that client")
        ->default_val(c.max_name)
        ->needs(chat);
    cmd.add_flag("--unique-names", c.unique_names,
                 "--chat: a username already in use closes the newcomer (nothing is sent to it: "
                 "the protocol has no error frame)")
        ->needs(chat);
    cmd.add_option("--history", c.history,
                   "--chat: a newcomer first receives the last N messages (at most half of "
                   "--client-buffer bytes)")
        ->default_val(c.history)
        ->needs(chat);
}

void add_tls_options(CLI::App& cmd, serve_config& cfg) {
    auto& t = cfg.node.server.tls;
    auto* cert = cmd.add_option("--tls-cert", t.cert,
                                "Serve TLS (1.2 or 1.3) with this PEM certificate chain, leaf "
                                "first; needs --tls-key. SIGHUP reloads the certificate, key and "
                                "client CA for new connections (connected clients stay). See "
                                "docs/security.md")
                     ->check(CLI::ExistingFile);
    auto* key = cmd.add_option("--tls-key", t.key, "--tls-cert's PEM private key")
                    ->check(CLI::ExistingFile);
    cert->needs(key);
    key->needs(cert);
    cmd.add_option("--tls-client-ca", t.client_ca,
                   "Mutual TLS: every client must present a certificate signed by a CA in this "
                   "PEM file, or it is closed during the handshake (with --auth cert the "
                   "certificate is also the client's identity)")
        ->check(CLI::ExistingFile)
        ->needs(cert);
    add_seconds_option(cmd, "--tls-handshake-timeout", t.handshake_timeout,
                       "Seconds a connection has to complete the TLS handshake before it is closed "
                       "(a plaintext client on a TLS port waits this long, then sees the close)")
        ->check(CLI::Range(0.001, 3600.0))
        ->needs(cert);
}

void add_auth_options(CLI::App& cmd, serve_config& cfg) {
    auto& a = cfg.node.server.auth;
    auto* auth = cmd.add_option("--auth", cfg.auth_mode,
                                "Require authentication. 'jwt': a client's first frame is a JSON "
                                "Web Token (with 'sub' and 'exp'), verified with --jwt-key; a "
                                "client without a valid one gets one frame saying why and is "
                                "closed, having seen nothing; one whose token expires is told "
                                "and closed. 'cert': a client is who its TLS client certificate "
                                "says (needs --tls-client-ca): its first email, DNS or URI "
                                "subjectAltName, else its subject CN; no token is sent; its "
                                "permissions come from the [permissions] table of --config "
                                "(SIGHUP reads it again, for new connections); it is closed "
                                "when the certificate expires. Covers wss:// (--ws --ws-tls) "
                                "too, not plain ws://. See docs/security.md")
                     ->check(CLI::IsMember({"jwt", "cert"}));
    auto* key = cmd.add_option("--jwt-key", a.jwt_key,
                               "--auth jwt: HS256: a file holding the shared secret (at least 32 "
                               "bytes; one trailing newline ignored); RS256/ES256: a PEM public key")
                    ->check(CLI::ExistingFile)
                    ->needs(auth);
    cmd.add_option("--jwt-alg", a.jwt_alg,
                   "--auth jwt: the one algorithm accepted (tokens naming another, 'none' "
                   "included, are refused)")
        ->default_val(a.jwt_alg)
        ->check(CLI::IsMember({"HS256", "RS256", "ES256"}))
        ->needs(key);
}

// --auth: what each mode needs, and the certificate identities' permissions table.
bool check_auth(serve_config& cfg, const toml_config* config) {
    auto& s = cfg.node.server;
    const auto* table = config ? &config->permissions() : nullptr;
    const bool has_table = table && table->has_value();
    if (cfg.auth_mode == "jwt" && s.auth.jwt_key.empty()) {
        spdlog::error("--auth jwt needs --jwt-key FILE (the secret or public key tokens are "
                      "verified with)");
        return false;
    }
    if (cfg.auth_mode != "cert") {
        if (has_table) {
            spdlog::error("the config file's [permissions] table is for certificate identities: "
                          "it needs --auth cert (with --auth jwt, permissions are in the token)");
            return false;
        }
        return true;
    }
    if (!s.auth.jwt_key.empty()) {
        spdlog::error("--jwt-key is for --auth jwt; --auth cert takes no token");
        return false;
    }
    if (s.tls.client_ca.empty()) {
        spdlog::error("--auth cert needs mutual TLS: --tls-cert, --tls-key and --tls-client-ca "
                      "(the CA that signs the clients' certificates)");
        return false;
    }
    if (!cfg.ws.empty() && !cfg.node.ws_opts.wss) {
        spdlog::error("--auth cert with --ws needs --ws-tls: over plain ws:// no client "
                      "certificate can be presented, so no WebSocket client could be admitted");
        return false;
    }
    s.auth.cert = true;
    if (has_table) s.auth.cert_permissions = **table;
    if (config && config->given()) {
        // SIGHUP: the table again. Losing it would let every certificate do everything: that
        // takes a restart, not a reload.
        cfg.node.read_permissions = [file = config->file_name(), has_table] {
            auto t = read_permissions_file(file);
            if (has_table && !t) {
                throw std::runtime_error(file + " has no [permissions] table any more (to let "
                                                "every certificate do everything, restart)");
            }
            return t;
        };
    }
    return true;
}

void add_channel_options(CLI::App& cmd, serve_config& cfg) {
    auto& c = cfg.node.server.channels;
    auto* flag = cmd.add_flag(
        "--channels", c.enabled,
        "Named channels (docs/channels.md): a client sends command frames 'SUB pattern', "
        "'UNSUB pattern' and 'PUB channel' (followed by one payload frame); each delivery is "
        "two frames, the channel then the payload. Names are dot-separated tokens; in patterns "
        "'*' matches one token, '>' the rest. Answers and errors arrive on '$sys.ok' and "
        "'$sys.error'. No welcome, no source; excludes --publish and --chat");
    flag->excludes(cmd.get_option("--publish"));
    flag->excludes(cmd.get_option("--chat"));
    cmd.add_option("--max-channel-name", c.limits.max_name,
                   "--channels: longest channel name or pattern, in bytes")
        ->default_val(c.limits.max_name)
        ->needs(flag);
    cmd.add_option("--max-tokens", c.limits.max_tokens,
                   "--channels: most dot-separated tokens in a channel name or pattern")
        ->default_val(c.limits.max_tokens)
        ->needs(flag);
    cmd.add_option("--max-subscriptions", c.limits.max_subscriptions,
                   "--channels: patterns one client may hold at once")
        ->default_val(c.limits.max_subscriptions)
        ->needs(flag);
    cmd.add_option("--channel-metrics", c.metrics_channels,
                   "--channels: per-channel counters in the metrics (messages published, "
                   "deliveries) for at most N channels, the first ones published to; the others "
                   "add up under channel=\"_other\". 0: none (bounded cardinality: each channel "
                   "is a time series in your Prometheus)")
        ->default_val(c.metrics_channels)
        ->needs(flag);
    cmd.add_option("--max-channels", c.limits.max_channels,
                   "--channels: distinct patterns subscribed on this server at once (bounds the "
                   "subscription trie's memory)")
        ->default_val(c.limits.max_channels)
        ->needs(flag);
}

void add_resume_options(CLI::App& cmd, serve_config& cfg) {
    auto& r = cfg.node.server.resume;
    auto* flag = cmd.add_flag(
        "--resume", r.enabled,
        "Resumable stream (docs/resume.md): every message gets an offset and the last ones are "
        "kept; a client whose first frame is '@resume NONCE [EPOCH LAST]' (framecast connect "
        "--resume) gets what it missed, then the live stream, each piece after a position "
        "frame. Other clients see the stream as always. With --backplane the offsets come from "
        "the shared Redis stream (the same on every node: a client may resume on any node; "
        "the stream must be written by --resume nodes only), a node starts with the "
        "stream's recent entries as history, and a client older than the window is replayed "
        "from the stream while it keeps it (--backplane-retention). With --channels every "
        "channel has its own offsets and window (a client sends 'RESUME CHANNEL EPOCH LAST': "
        "framecast sub --resume; docs/resume.md#channels; with --backplane the stream numbers "
        "every channel too, the same on every node). Excludes --chat");
    flag->excludes(cmd.get_option("--chat"));
    cmd.add_option("--resume-window", r.history_messages,
                   "--resume: messages kept for resuming clients, at least (unless "
                   "--resume-bytes is reached first)")
        ->default_val(r.history_messages)
        ->check(CLI::Range(std::size_t{1}, std::size_t{100'000'000}))
        ->needs(flag);
    add_size_option(cmd, "--resume-bytes", r.history_bytes,
                    "--resume: bytes of messages kept at most (with --channels: of all channels "
                    "together), counted under --memory-limit (default 64MiB)")
        ->needs(flag);
    cmd.add_option("--resume-total", r.channel_total_messages,
                   "--channels --resume: messages kept at most by all channels' histories "
                   "together (the oldest go first, whichever channel holds them); "
                   "--resume-window is then each channel's window")
        ->default_val(r.channel_total_messages)
        ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000'000}))
        ->needs(flag);
    cmd.add_option("--resume-channels", r.idle_channels,
                   "--channels --resume: channels whose next offset is remembered once their "
                   "history is empty (with --backplane: channels the Redis stream numbers); past "
                   "it the longest unused are forgotten, and one published to again starts "
                   "above every offset it had (a client holding an old position is told of a "
                   "gap, never given an offset twice)")
        ->default_val(r.idle_channels)
        ->check(CLI::Range(std::size_t{1}, std::size_t{100'000'000}))
        ->needs(flag);
    cmd.add_option("--resume-log-replays", r.log_replays,
                   "--resume --backplane: resuming clients whose position is older than this "
                   "node's window replay it from the Redis stream (while it keeps it: "
                   "--backplane-retention); this many read from it at once, each holding at most "
                   "one piece of about 64 KiB in flight; the others wait their turn")
        ->default_val(r.log_replays)
        ->check(CLI::Range(std::size_t{1}, std::size_t{1024}))
        ->needs(flag);
}

void add_publish_ack_options(CLI::App& cmd, serve_config& cfg) {
    auto& p = cfg.node.server.publish_acks;
    auto* flag = cmd.add_flag(
        "--publish-acks", p.enabled,
        "Publishing that survives reconnects (docs/resume.md#publishing): a publisher whose "
        "first frame is '@publish NONCE PUBLISHER [FIRST]' (framecast send/pub --reconnect) "
        "gets its messages numbered and acknowledged ('@ack NONCE SEQ'), and a message it "
        "resends after a reconnection is dropped if it was accepted before. Other clients "
        "are unaffected. With --publish or --channels. With --backplane the numbers are kept "
        "in Redis (deduplicated across nodes and restarts) and a message is acknowledged once "
        "Redis has it (docs/resume.md#several-nodes)");
    flag->excludes(cmd.get_option("--chat"));
    cmd.add_option("--max-publishers", p.max_publishers,
                   "--publish-acks: publishers remembered at once; when full, the longest idle "
                   "one is forgotten (a request is refused only when all are connected); with "
                   "--backplane also the bound of the publishers kept in Redis")
        ->default_val(p.max_publishers)
        ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000}))
        ->needs(flag);
    add_seconds_option(cmd, "--publisher-expiry", p.expiry,
                       "--publish-acks: forget a publisher this many seconds after its last "
                       "connection ended (a publisher away longer may see a message it had not "
                       "had acknowledged published twice); with --backplane, Redis forgets a "
                       "publisher unused this long")
        ->check(CLI::Range(0.0, 1e7))
        ->needs(flag);
}

void add_backplane_options(CLI::App& cmd, serve_config& cfg) {
    auto& b = cfg.backplane;
    cmd.add_option("--backplane", cfg.backplane_url,
                   "Share one stream with other framecast nodes through a broker: "
                   "redis://[[USER:]PASSWORD@]HOST[:PORT][/KEY] (a Redis Stream at KEY, default "
                   "'framecast'; with a password, AUTH on every connection). "
                   "Every message that enters this node's broadcast is appended there and "
                   "delivered back from it, so all clients on all nodes see one order. "
                   "See docs/backplane.md");
    cmd.add_option("--backplane-retention", b.retention,
                   "--backplane: entries the stream keeps (approximately); a node away longer "
                   "than this window misses what was trimmed")
        ->default_val(b.retention)
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40))
        ->needs("--backplane");
    add_size_option(cmd, "--backplane-retention-bytes", b.retention_bytes,
                    "--backplane: bytes the stream keeps (approximately: fewer entries are kept "
                    "when this node's entries are large). Also set Redis maxmemory "
                    "(docs/security.md). 0: entries only")
        ->needs("--backplane");
    cmd.add_option("--backplane-pending", b.pending_limit,
                   "--backplane: messages held while the broker is unreachable or slow; beyond "
                   "it (or --backplane-pending-bytes) new ones are dropped and counted")
        ->default_val(b.pending_limit)
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 32))
        ->needs("--backplane");
    add_size_option(cmd, "--backplane-pending-bytes", b.pending_bytes_limit,
                    "--backplane: bytes held while the broker is unreachable or slow")
        ->needs("--backplane");
    cmd.add_flag("--backplane-time", cfg.node.backplane_time,
                 "--backplane: the time source publishes through the backplane (one clock "
                 "for all nodes; every node that has one adds its ticks). Default: each node "
                 "sends its own ticks to its own clients only")
        ->needs("--backplane");
}

void add_print_options(CLI::App& cmd, serve_config& cfg) {
    auto* print = cmd.add_flag(
        "--print", cfg.print,
        "Print what clients send on stdout instead of relaying it (like nc -l, but framed): "
        "no source, no welcome by default; a blocked stdout holds the server back");
    print->excludes(cmd.get_option("--publish"))
        ->excludes(cmd.get_option("--chat"))
        ->excludes(cmd.get_option("--backplane"));
    cmd.add_option("-o,--output", cfg.output,
                   "--print: lines (each payload and a newline), raw (payloads only), framed (the "
                   "frames as received), json (one object per line {seq, length, time, "
                   "text|base64})")
        ->check(CLI::IsMember({"lines", "raw", "framed", "json"}, CLI::ignore_case))
        ->default_val(cfg.output)
        ->needs(print);
}

void add_metrics_option(CLI::App& cmd, std::string& address) {
    cmd.add_option("--metrics", address,
                   "Serve Prometheus metrics at http://HOST:PORT/metrics and a health check at "
                   "/healthz (HOST defaults to 127.0.0.1; port 0 picks one, printed on stdout as "
                   "'metrics on http://HOST:PORT/metrics'). Off by default")
        ->check(endpoint_validator());
}

void add_ws_options(CLI::App& cmd, serve_config& cfg) {
    auto& w = cfg.node.ws_opts;
    auto* ws = cmd.add_option(
        "--ws", cfg.ws,
        "Also serve WebSocket clients and the live page on HOST:PORT (HTTP): the page at "
        "http://HOST:PORT/, its client library at /framecast.js, WebSocket upgrades on any "
        "path. One framecast message = one WebSocket message (text when valid UTF-8, else "
        "binary); every mode and limit applies as to TCP clients. Prints 'websocket on "
        "ws://HOST:PORT/'. See docs/websocket.md");
    ws->check(endpoint_validator());
    cmd.add_option("--ws-origin", w.origins,
                   "--ws: an Origin allowed to open a WebSocket (e.g. https://example.com); "
                   "repeatable. Others are answered 403. Default: any origin")
        ->needs(ws);
    cmd.add_flag("--ws-deflate", w.deflate,
                 "--ws: offer permessage-deflate compression (off by default: it costs CPU and "
                 "memory per client at fan-out)")
        ->needs(ws);
    add_seconds_option(cmd, "--ws-ping", w.ping_interval,
                       "--ws: seconds without traffic before a ping; a client silent twice as "
                       "long is closed. 0: no keepalive")
        ->check(CLI::Range(0.0, 86400.0))
        ->needs(ws);
    cmd.add_flag("--ws-tls", w.wss,
                 "--ws: TLS on the WebSocket listener too (wss:// and https:// for the page), "
                 "with --tls-cert/--tls-key's certificate. Prints 'websocket on wss://HOST:PORT/'")
        ->needs(ws)
        ->needs("--tls-cert");
    cmd.add_option("--ws-trust-proxy", w.trusted_proxies,
                   "--ws: IP address of a reverse proxy in front of the WebSocket listener "
                   "(repeatable, or comma-separated). A connection from it is the client named "
                   "by the last X-Forwarded-For entry in logs, --max-per-address and metrics; "
                   "from anyone else X-Forwarded-For is ignored. Default: never believed")
        ->delimiter(',')
        ->check([](const std::string& a) {
            boost::system::error_code ec;
            boost::asio::ip::make_address(a, ec);
            return ec ? "not an IP address: '" + a + "'" : std::string();
        })
        ->needs(ws);
    add_seconds_option(cmd, "--ws-handshake-timeout", w.handshake_timeout,
                       "--ws: seconds from a connection's first byte to the end of its WebSocket "
                       "handshake (or HTTP response); also bounds the closing handshake")
        ->check(CLI::Range(0.001, 3600.0))
        ->needs(ws);
}

}  // namespace

command_runner register_serve(CLI::App& app) {
    auto cfg = std::make_shared<serve_config>();
    auto* cmd = app.add_subcommand(
        "serve",
        "Stream framed messages to every client that connects (the tutorial's server: a welcome, "
        "then 'The time is <unix time>' every 3 s).");
    add_stream_options(*cmd, *cfg);
    add_limit_options(*cmd, *cfg);
    add_chat_options(*cmd, *cfg);
    add_tls_options(*cmd, *cfg);
    add_auth_options(*cmd, *cfg);
    add_channel_options(*cmd, *cfg);
    add_backplane_options(*cmd, *cfg);
    add_resume_options(*cmd, *cfg);
    add_publish_ack_options(*cmd, *cfg);
    add_print_options(*cmd, *cfg);
    add_metrics_option(*cmd, cfg->metrics);
    add_ws_options(*cmd, *cfg);
    add_verbosity_flags(*cmd, cfg->verbosity);
    auto* source_opt = cmd->get_option("--source");
    auto* welcome_opt = cmd->get_option("--welcome");
    auto* memory_opt = cmd->get_option("--memory-limit");
    auto config = std::dynamic_pointer_cast<toml_config>(cmd->get_config_formatter());
    return [cfg, source_opt, welcome_opt, memory_opt, config] {
        const bool source_given = source_opt->count() > 0;
        auto& s = cfg->node.server;
        if (memory_opt->count() == 0) s.memory_limit = default_memory_limit(s.memory_limit);
        if (cfg->print) s.publish = true;  // client frames go to the ingress, i.e. the printer
        const bool paired = s.chat.enabled || s.channels.enabled;  // frames travel in pairs
        if ((s.publish || paired) && !source_given) cfg->node.source = io::source_kind::none;
        // The welcome belongs to the time stream: a data stream's subscribers would take it for
        // data (the first line of stdin, say), and a chat client for a username.
        if ((cfg->node.source != io::source_kind::time || paired) && welcome_opt->count() == 0) {
            s.welcome.clear();
        }
        return run_serve(*cfg, source_given, config.get());
    };
}

}  // namespace framecast::app
