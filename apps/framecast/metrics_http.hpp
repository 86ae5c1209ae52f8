// --metrics HOST:PORT: Prometheus text at /metrics and a health check at /healthz, served by
// cpp-httplib on a thread of its own. Snapshots are taken on the server's thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include "framecast/io/asio.hpp"
#include <boost/asio/io_context.hpp>

#include "framecast/io/metrics.hpp"

namespace framecast::app {

class metrics_endpoint {
public:
    // Takes a snapshot; runs on the io_context's thread.
    using snapshot_fn = std::function<io::metrics_snapshot()>;

    // Binds `address` (HOST:PORT; port 0 picks one) and serves until destroyed. Prints
    // "metrics on http://HOST:PORT/metrics" on stdout. Throws std::runtime_error if it cannot bind.
    metrics_endpoint(const std::string& address, asio::io_context& io, snapshot_fn snapshot);
    ~metrics_endpoint();
    metrics_endpoint(const metrics_endpoint&) = delete;
    metrics_endpoint& operator=(const metrics_endpoint&) = delete;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Adds --metrics to a subcommand.
void add_metrics_option(CLI::App& cmd, std::string& address);

}  // namespace framecast::app
