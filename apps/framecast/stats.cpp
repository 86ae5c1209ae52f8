// framecast stats HOST:PORT: a refreshing one-screen summary of a server's /metrics.
#include <unistd.h>

#include <httplib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "cli.hpp"

namespace framecast::app {
namespace {

struct stats_config {
    std::string address;
    double interval = 1.0;
    std::size_t count = 0;
};

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

exit_code run_stats(const stats_config& cfg) {
    auto ep = parse_endpoint(cfg.address);
    std::string host = ep.host.empty() ? "127.0.0.1" : ep.host;
    httplib::Client http(host, ep.port);
    http.set_connection_timeout(2);
    http.set_read_timeout(5);
    const bool tty = ::isatty(STDOUT_FILENO);
    std::map<std::string, double> prev;
    auto prev_time = std::chrono::steady_clock::now();
    for (std::size_t n = 0; cfg.count == 0 || n < cfg.count; ++n) {
        if (n > 0) std::this_thread::sleep_for(std::chrono::duration<double>(cfg.interval));
        auto res = http.Get("/metrics");
        if (!res || res->status != 200) {
            std::fprintf(stderr, "framecast stats: cannot read http://%s/metrics: %s\n",
                         ep.to_string().c_str(),
                         res ? ("HTTP " + std::to_string(res->status)).c_str()
                             : httplib::to_string(res.error()).c_str());
            return exit_code::connect_failed;
        }
        auto now = std::chrono::steady_clock::now();
        auto cur = parse_metrics(res->body);
        double dt = std::chrono::duration<double>(now - prev_time).count();
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
    cmd->add_option("address", cfg->address, "HOST:PORT of the server's --metrics endpoint")
        ->required()
        ->check(endpoint_validator());
    cmd->add_option("--interval", cfg->interval, "Seconds between refreshes")
        ->default_val(cfg->interval)
        ->check(CLI::Range(0.05, 3600.0));
    cmd->add_option("--count", cfg->count, "Refreshes before exiting; 0: until interrupted")
        ->default_val(cfg->count);
    return [cfg] { return run_stats(*cfg); };
}

}  // namespace framecast::app
