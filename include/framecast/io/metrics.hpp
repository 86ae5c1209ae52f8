// Server metrics in the Prometheus text exposition format (version 0.0.4), rendered from a
// snapshot taken on the server's thread. No HTTP here: the app serves the text.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "framecast/backplane.hpp"
#include "framecast/io/server.hpp"

namespace framecast::io {

struct metrics_snapshot {
    server_counters counters;
    std::size_t memory_used = 0;  // the memory budget's account
    std::vector<std::size_t> queue_bytes;  // per connected client
    slow_consumer_policy policy = slow_consumer_policy::disconnect;
    double uptime_seconds = 0;
    std::string version;
    std::optional<backplane::stats> backplane;  // when a backplane is configured
    std::vector<channel_metric> channels;        // serve --channels --channel-metrics N
    std::optional<server::resume_state> resume;  // serve --resume
    std::optional<server::publish_state> publish;  // serve --publish-acks
};

// Takes the snapshot; call on the server's thread.
metrics_snapshot snapshot_metrics(const server& srv);

std::string render_prometheus(const metrics_snapshot& m);

}  // namespace framecast::io
