#include "metrics_http.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <optional>
#include <stdexcept>
#include <thread>

#include <boost/asio/post.hpp>

#include "cli.hpp"

namespace framecast::app {

struct metrics_endpoint::impl {
    httplib::Server http;
    std::thread thread;
    asio::io_context& io;
    snapshot_fn snapshot;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

    impl(asio::io_context& io_, snapshot_fn fn) : io(io_), snapshot(std::move(fn)) {}

    // Asks the server's thread for a snapshot; nullopt if it does not answer within 2 s.
    std::optional<io::metrics_snapshot> take() {
        auto promise = std::make_shared<std::promise<io::metrics_snapshot>>();
        auto result = promise->get_future();
        asio::post(io, [promise, fn = snapshot] { promise->set_value(fn()); });
        if (result.wait_for(std::chrono::seconds(2)) != std::future_status::ready) return std::nullopt;
        auto m = result.get();
        m.uptime_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        m.version = FRAMECAST_VERSION;
        return m;
    }
};

metrics_endpoint::metrics_endpoint(const std::string& address, asio::io_context& io, snapshot_fn snapshot)
    : impl_(std::make_unique<impl>(io, std::move(snapshot))) {
    auto ep = parse_endpoint(address);
    std::string host = ep.host.empty() ? "127.0.0.1" : ep.host;
    auto& http = impl_->http;
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
        if (auto m = impl_->take()) {
            res.set_content(io::render_prometheus(*m), "text/plain; version=0.0.4; charset=utf-8");
        } else {
            res.status = 503;
            res.set_content("server loop not answering\n", "text/plain");
        }
    });
    http.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
        // Healthy when the server's event loop answers: it is not stuck.
        if (impl_->take()) {
            res.set_content("ok\n", "text/plain");
        } else {
            res.status = 503;
            res.set_content("server loop not answering\n", "text/plain");
        }
    });
    int port = ep.port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, ep.port) ? ep.port : -1);
    if (port < 0) throw std::runtime_error("cannot serve metrics on " + ep.to_string());
    bool v6 = host.find(':') != std::string::npos;
    std::string shown = (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
    std::printf("metrics on http://%s/metrics\n", shown.c_str());
    std::fflush(stdout);
    spdlog::info("metrics on http://{}/metrics, health check on /healthz", shown);
    impl_->thread = std::thread([this] { impl_->http.listen_after_bind(); });
    // httplib's stop() does nothing until the listener runs; wait for it (bounded), so a server
    // that exits at once does not hang joining a listener that never saw the stop.
    for (int i = 0; i < 2000 && !impl_->http.is_running(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

metrics_endpoint::~metrics_endpoint() {
    impl_->http.stop();
    if (impl_->thread.joinable()) impl_->thread.join();
}

void add_metrics_option(CLI::App& cmd, std::string& address) {
    cmd.add_option("--metrics", address,
                   "Serve Prometheus metrics at http://HOST:PORT/metrics and a health check at "
                   "/healthz (HOST defaults to 127.0.0.1; port 0 picks one, printed on stdout as "
                   "'metrics on http://HOST:PORT/metrics'). Off by default")
        ->check(endpoint_validator());
}

}  // namespace framecast::app
