// framecast stats HOST:PORT (or a URL): a refreshing one-screen summary of a server's /metrics.
#include <algorithm>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "cli.hpp"
#include "framecast/io/asio.hpp"

namespace framecast::app {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;

struct stats_config {
    std::string address;
    double interval = 1.0;
    std::size_t count = 0;
};

// Where the metrics are: HOST:PORT (path /metrics), or http://HOST[:PORT][/PATH].
struct metrics_url {
    endpoint ep;
    std::string path = "/metrics";
    std::string to_string() const { return "http://" + ep.to_string() + path; }
};

metrics_url parse_metrics_url(const std::string& text) {
    const std::string scheme = "http://";
    if (text.rfind(scheme, 0) != 0) {
        if (text.find("://") != std::string::npos) {
            throw CLI::ValidationError("'" + text + "': only http:// URLs are supported");
        }
        return {parse_endpoint(text)};
    }
    auto rest = text.substr(scheme.size());
    auto slash = rest.find('/');
    auto authority = rest.substr(0, slash);
    metrics_url url;
    if (slash != std::string::npos) url.path = rest.substr(slash);
    const bool has_port = authority.find(':', authority.rfind(']') == std::string::npos
                                                  ? 0 : authority.rfind(']')) != std::string::npos;
    url.ep = parse_endpoint(has_port ? authority : authority + ":80");
    if (url.ep.host.empty()) throw CLI::ValidationError("'" + text + "': the URL names no host");
    return url;
}

struct fetch_result {
    std::string error;  // empty: `status` and `body` hold the answer
    unsigned status = 0;
    std::string body;
};

// One GET, the whole exchange within `timeout`; the reason of a failure in full.
fetch_result http_get(const metrics_url& url, std::chrono::seconds timeout) {
    asio::io_context io(1);
    fetch_result out;
    auto exchange = [&]() -> asio::awaitable<void> {
        const std::string host = url.ep.host.empty() ? "127.0.0.1" : url.ep.host;
        asio::ip::tcp::resolver resolver(io);
        beast::tcp_stream stream(io);
        stream.expires_after(timeout);
        auto [rec, results] = co_await resolver.async_resolve(host, std::to_string(url.ep.port), use_nothrow);
        if (rec) co_return void(out.error = rec.message());
        auto [cec, ep] = co_await stream.async_connect(results, use_nothrow);
        if (cec) co_return void(out.error = cec.message());
        http::request<http::empty_body> req{http::verb::get, url.path, 11};
        req.set(http::field::host, url.ep.to_string());
        req.set(http::field::user_agent, "framecast-stats");
        auto [wec, wn] = co_await http::async_write(stream, req, use_nothrow);
        if (wec) co_return void(out.error = wec.message());
        beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(64u << 20);
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
        if (ec) co_return void(out.error = ec.message());
        out.status = parser.get().result_int();
        out.body = std::move(parser.get().body());
    };
    asio::co_spawn(io, exchange(), asio::detached);
    io.run();
    return out;
}

// Prometheus text → "name{labels}" → value. Comments and malformed lines are skipped.
std::map<std::string, double> parse_metrics(const std::string& text) {
    std::map<std::string, double> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        auto space = line.rfind(' ');
        if (space == std::string::npos) continue;
        try {
            out[line.substr(0, space)] = std::stod(line.substr(space + 1));
        } catch (const std::exception&) {
        }
    }
    return out;
}

double get(const std::map<std::string, double>& m, const std::string& key) {
    auto it = m.find(key);
    return it == m.end() ? 0.0 : it->second;
}

double sum_prefix(const std::map<std::string, double>& m, const std::string& prefix) {
    double total = 0;
    for (auto it = m.lower_bound(prefix); it != m.end() && it->first.rfind(prefix, 0) == 0; ++it) {
        total += it->second;
    }
    return total;
}

// One screen of the summary; rates from the previous scrape, `dt` seconds ago (none yet: 0).
std::string render_screen(const endpoint& ep, const std::map<std::string, double>& cur,
                          const std::map<std::string, double>& prev, double dt) {
    auto rate = [&](const std::string& key) {
        return prev.empty() || dt <= 0 ? 0.0 : (get(cur, key) - get(prev, key)) / dt;
    };
    std::string screen;
    char line[256];
    std::snprintf(line, sizeof line, "framecast %s  up %.0f s  %s\n", ep.to_string().c_str(),
                  get(cur, "framecast_uptime_seconds"), prev.empty() ? "(rates from the next refresh)" : "");
    screen += line;
    std::snprintf(line, sizeof line, "clients     %8.0f connected  %10.0f accepted  %8.0f rejected\n",
                  get(cur, "framecast_clients_connected"), get(cur, "framecast_clients_accepted_total"),
                  get(cur, "framecast_clients_rejected_total"));
    screen += line;
    std::snprintf(line, sizeof line, "messages in %10.1f/s  %12.0f total   %12.1f KB/s\n",
                  rate("framecast_messages_in_total"), get(cur, "framecast_messages_in_total"),
                  rate("framecast_bytes_in_total") / 1000);
    screen += line;
    std::snprintf(line, sizeof line, "messages out%10.1f/s  %12.0f total   %12.1f KB/s\n",
                  rate("framecast_messages_out_total"), get(cur, "framecast_messages_out_total"),
                  rate("framecast_bytes_out_total") / 1000);
    screen += line;
    std::snprintf(line, sizeof line, "broadcasts  %10.1f/s  %12.0f total\n",
                  rate("framecast_messages_broadcast_total"), get(cur, "framecast_messages_broadcast_total"));
    screen += line;
    std::snprintf(line, sizeof line, "slow        %8.0f disconnected  %10.0f frames dropped\n",
                  get(cur, "framecast_slow_consumer_actions_total{policy=\"disconnect\"}"),
                  get(cur, "framecast_slow_consumer_actions_total{policy=\"drop_oldest\"}"));
    screen += line;
    std::snprintf(line, sizeof line, "errors      %8.0f bad input  %8.0f idle timeouts  %8.0f floods\n",
                  sum_prefix(cur, "framecast_decode_errors_total"), get(cur, "framecast_idle_timeouts_total"),
                  get(cur, "framecast_floods_total"));
    screen += line;
    if (cur.count("framecast_backplane_up")) {
        std::snprintf(line, sizeof line, "backplane   %s  lag %.3f s  %0.f pending  %0.f dropped\n",
                      get(cur, "framecast_backplane_up") > 0 ? "up  " : "DOWN",
                      get(cur, "framecast_backplane_lag_seconds"), get(cur, "framecast_backplane_pending"),
                      get(cur, "framecast_backplane_dropped_total"));
        screen += line;
    }
    if (cur.count("framecast_resume_next_offset")) {
        std::snprintf(line, sizeof line,
                      "resume      offset %.0f  history %.0f msgs  %.0f clients  lag %.0f msgs  "
                      "%.0f gaps\n",
                      // 0 with --channels: offsets are per channel (shown as 0).
                      std::max(get(cur, "framecast_resume_next_offset") - 1, 0.0),
                      get(cur, "framecast_resume_history_messages"),
                      get(cur, "framecast_resume_clients"), get(cur, "framecast_resume_max_lag"),
                      get(cur, "framecast_resume_gaps_total"));
        screen += line;
    }
    if (cur.count("framecast_publish_publishers")) {
        std::snprintf(line, sizeof line,
                      "publishers  %8.0f remembered  %10.0f accepted  %8.0f duplicates dropped\n",
                      get(cur, "framecast_publish_publishers"),
                      get(cur, "framecast_publish_accepted_total"),
                      get(cur, "framecast_publish_duplicates_total"));
        screen += line;
    }
    return screen;
}

exit_code run_stats(const stats_config& cfg) {
    const auto url = parse_metrics_url(cfg.address);
    const auto& ep = url.ep;
    const bool tty = ::isatty(STDOUT_FILENO);
    std::map<std::string, double> prev;
    auto prev_time = std::chrono::steady_clock::now();
    for (std::size_t n = 0; cfg.count == 0 || n < cfg.count; ++n) {
        if (n > 0) std::this_thread::sleep_for(std::chrono::duration<double>(cfg.interval));
        auto res = http_get(url, std::chrono::seconds(5));
        if (res.error.empty() && res.status != 200) res.error = "HTTP " + std::to_string(res.status);
        if (!res.error.empty()) {
            std::fprintf(stderr, "framecast stats: cannot read %s: %s\n", url.to_string().c_str(),
                         res.error.c_str());
            return exit_code::connect_failed;
        }
        auto now = std::chrono::steady_clock::now();
        auto cur = parse_metrics(res.body);
        double dt = std::chrono::duration<double>(now - prev_time).count();
        auto screen = render_screen(ep, cur, prev, dt);
        if (tty) std::fputs("\x1b[H\x1b[2J", stdout);  // one screen, refreshed in place
        else if (n > 0) std::fputs("\n", stdout);
        std::fputs(screen.c_str(), stdout);
        std::fflush(stdout);
        prev = std::move(cur);
        prev_time = now;
    }
    return exit_code::ok;
}

}  // namespace

command_runner register_stats(CLI::App& app) {
    auto cfg = std::make_shared<stats_config>();
    auto* cmd = app.add_subcommand(
        "stats", "Show a refreshing summary of a server's metrics (the address of serve --metrics): "
                 "clients, messages/s in and out, slow consumers, errors");
    cmd->add_option("address", cfg->address,
                    "HOST:PORT of the server's --metrics endpoint, or its URL "
                    "(http://HOST:PORT/metrics)")
        ->required()
        ->check(validator_from([](const std::string& s) { parse_metrics_url(s); },
                               "HOST:PORT|URL"));
    cmd->add_option("--interval", cfg->interval, "Seconds between refreshes")
        ->default_val(cfg->interval)
        ->check(CLI::Range(0.05, 3600.0))
        ->transform(number_validator());
    cmd->add_option("--count", cfg->count, "Refreshes before exiting; 0: until interrupted")
        ->default_val(cfg->count);
    return [cfg] { return run_stats(*cfg); };
}

}  // namespace framecast::app
