#include "framecast/io/metrics.hpp"

#include <fmt/format.h>

#include <array>
#include <iterator>
#include <utility>

namespace framecast::io {
namespace {

// Decode error kinds by framecast::errc value, as label values.
// Upper bounds of the outbound-queue histogram, in bytes.
constexpr std::array<double, 8> queue_buckets{0, 1024, 16384, 65536, 262144, 1048576, 4194304, 8388608};

struct writer {
    std::string out;
    void family(const char* name, const char* type, const char* help) {
        fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    }
    void sample(const char* name, double value, const std::string& labels = {}) {
        fmt::format_to(std::back_inserter(out), "{}{}{}{} {}\n", name, labels.empty() ? "" : "{",
                       labels, labels.empty() ? "" : "}", value);
    }
    void counter(const char* name, const char* help, double value) {
        family(name, "counter", help);
        sample(name, value);
    }
    void gauge(const char* name, const char* help, double value) {
        family(name, "gauge", help);
        sample(name, value);
    }
};

// A label value in the text format: backslash, double quote and line feed escaped.
std::string label_value(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char ch : v) {
        if (ch == '\\' || ch == '"') {
            out += '\\';
            out += ch;
        } else if (ch == '\n') {
            out += "\\n";
        } else {
            out += ch;
        }
    }
    return out;
}

void render_resume(writer& w, const server::resume_state& r, const server_counters& c) {
    w.gauge("framecast_resume_next_offset", "The offset the next broadcast message gets (--resume)",
            static_cast<double>(r.next_offset));
    w.gauge("framecast_resume_history_messages", "Messages held for resuming clients",
            static_cast<double>(r.history_messages));
    w.gauge("framecast_resume_history_bytes", "Bytes of messages held for resuming clients",
            static_cast<double>(r.history_bytes));
    w.gauge("framecast_resume_clients", "Resuming clients connected (replaying or live)",
            static_cast<double>(r.clients));
    w.gauge("framecast_resume_max_lag",
            "Messages the furthest-behind replaying client has still to receive",
            static_cast<double>(r.max_lag));
    w.counter("framecast_resume_requests_total", "Resume requests answered", c.resume_requests);
    w.counter("framecast_resume_gaps_total",
              "Resuming clients told that messages were lost (outside the window, new epoch)",
              c.resume_gaps);
    w.counter("framecast_resume_replayed_total", "Messages replayed from the history",
              c.resume_replayed);
    w.counter("framecast_resume_log_replayed_total",
              "Messages replayed from the shared log (the backplane's stream), older than the "
              "history held in memory", c.resume_log_replayed);
    w.counter("framecast_resume_refused_total", "Malformed resume requests refused",
              c.resume_refused);
}

void render_publish(writer& w, const server::publish_state& p, const server_counters& c) {
    w.gauge("framecast_publish_publishers",
            "Publishers remembered for deduplication (--publish-acks)",
            static_cast<double>(p.publishers));
    w.counter("framecast_publish_requests_total", "Publish requests answered ('@published')",
              c.publish_requests);
    w.counter("framecast_publish_refused_total",
              "Publish requests refused (malformed, or the table full of connected publishers)",
              c.publish_refused);
    w.counter("framecast_publish_accepted_total", "Numbered messages accepted from publishers",
              c.publish_accepted);
    w.counter("framecast_publish_duplicates_total",
              "Numbered messages dropped: accepted before (resent after a reconnection; with "
              "--backplane, found in Redis)",
              c.publish_duplicates);
    w.counter("framecast_publish_acks_total", "Acknowledgements sent ('@ack')", c.publish_acks);
    w.counter("framecast_publish_evicted_total",
              "Idle publishers forgotten early to make room (--max-publishers)",
              static_cast<double>(p.evicted));
    w.counter("framecast_publish_expired_total",
              "Publishers forgotten after --publisher-expiry without a connection",
              static_cast<double>(p.expired));
}

}  // namespace

metrics_snapshot snapshot_metrics(const server& srv) {
    metrics_snapshot m;
    m.counters = srv.counters();
    m.queue_bytes = srv.client_queue_bytes();
    m.policy = srv.options().slow_consumer;
    m.memory_used = srv.memory_used();
    m.channels = srv.channel_metrics();
    if (srv.options().resume.enabled) m.resume = srv.resume_status();
    if (srv.options().publish_acks.enabled) m.publish = srv.publish_status();
    return m;
}

std::string render_prometheus(const metrics_snapshot& m) {
    const auto& c = m.counters;
    writer w;
    w.family("framecast_build_info", "gauge", "Version of the running framecast");
    w.sample("framecast_build_info", 1, fmt::format("version=\"{}\"", m.version));
    w.gauge("framecast_uptime_seconds", "Seconds since the server started", m.uptime_seconds);
    w.gauge("framecast_clients_connected", "Clients connected now", static_cast<double>(m.queue_bytes.size()));
    w.counter("framecast_clients_accepted_total", "Connections accepted", c.clients_accepted);
    w.counter("framecast_clients_rejected_total", "Connections closed at once: over --max-clients", c.clients_rejected);
    w.counter("framecast_messages_in_total", "Frames decoded from clients", c.messages_in);
    w.counter("framecast_bytes_in_total", "Bytes read from clients", c.bytes_in);
    w.counter("framecast_messages_broadcast_total", "Messages that entered the broadcast", c.messages_broadcast);
    w.counter("framecast_broadcast_deliveries_total", "Frames queued to clients by broadcasts (fan-out)", c.deliveries);
    w.counter("framecast_messages_out_total", "Frames fully written to clients", c.frames_out);
    w.counter("framecast_bytes_out_total", "Bytes written to clients", c.bytes_out);

    w.family("framecast_slow_consumer_actions_total", "counter",
             "Slow-consumer policy actions: clients disconnected, or frames dropped (drop-oldest)");
    w.sample("framecast_slow_consumer_actions_total", c.slow_disconnects, "policy=\"disconnect\"");
    w.sample("framecast_slow_consumer_actions_total", c.slow_dropped_frames, "policy=\"drop_oldest\"");
    w.counter("framecast_slow_consumer_dropped_bytes_total", "Bytes dropped by drop-oldest", c.slow_dropped_bytes);
    w.counter("framecast_backpressure_waits_total",
              "Times a source or publishing client waited for a client over half its queue (--backpressure)",
              c.backpressure_waits);
    w.counter("framecast_backpressure_timeouts_total",
              "Clients that held the sources back for --backpressure and were left to the slow-consumer policy",
              c.backpressure_timeouts);

    w.family("framecast_decode_errors_total", "counter", "Clients closed for bad input, by kind");
    for (errc e : all_errc) {
        // A configuration error and the client's TLS errors: never a peer's bytes to a server.
        if (e == errc::invalid_header_size || e == errc::tls_verify_failed ||
            e == errc::tls_handshake_failed || e == errc::auth_refused ||
            e == errc::resume_gap) {
            continue;
        }
        w.sample("framecast_decode_errors_total", c.decode_errors_by_kind[static_cast<std::size_t>(e)],
                 fmt::format("kind=\"{}\"", name(e)));
    }
    w.counter("framecast_idle_timeouts_total", "Clients closed for stalling mid-frame (--idle-timeout)", c.idle_timeouts);
    w.counter("framecast_floods_total", "Clients closed for sending above --max-rate", c.floods);
    w.counter("framecast_accept_errors_total", "Failed accepts (e.g. out of file descriptors)", c.accept_errors);
    w.counter("framecast_tls_handshake_failures_total",
              "TLS connections closed before they were clients (handshake failed or too slow)",
              c.tls_handshake_failures);
    w.counter("framecast_auth_refused_total", "Clients refused for their token (--auth)",
              c.auth_refused);
    w.counter("framecast_auth_expired_total",
              "Clients closed when their token expired while connected (--auth)", c.auth_expired);
    w.counter("framecast_memory_refused_total",
              "Connections refused at the memory limit (--memory-limit)", c.memory_refused);
    w.counter("framecast_memory_paused_reads_total",
              "Clients holding a partial frame not read at the memory limit", c.memory_paused);
    w.counter("framecast_memory_relieved_queues_total",
              "Queues the slow-consumer policy was applied to at the memory limit", c.memory_relieved);
    w.counter("framecast_per_address_rejected_total",
              "Connections closed at once: over --max-per-address", c.per_address_rejected);
    w.counter("framecast_backpressure_repeat_total",
              "Clients left to the slow-consumer policy at once: they had held the sources for "
              "--backpressure within the hold window",
              c.backpressure_repeat);
    w.gauge("framecast_memory_used_bytes",
            "What the memory budget counts: partial inbound frames, queues, history, pending "
            "backplane appends",
            static_cast<double>(m.memory_used));
    w.counter("framecast_chat_joins_total", "Chat usernames accepted (--chat)", c.chat_joins);
    w.counter("framecast_chat_names_rejected_total",
              "Chat clients closed for their username (--chat: empty, not UTF-8, too long, in use)",
              c.chat_names_rejected);
    w.counter("framecast_channel_subscribes_total", "Subscriptions added (--channels)", c.channel_subscribes);
    w.counter("framecast_channel_unsubscribes_total",
              "Subscriptions removed (--channels: UNSUB, or the client left)", c.channel_unsubscribes);
    w.gauge("framecast_channel_subscriptions", "Subscriptions held now (--channels)",
            static_cast<double>(c.channel_subscribes - c.channel_unsubscribes));
    w.counter("framecast_channel_errors_total",
              "Channel commands refused with a $sys.error notice (--channels)", c.channel_errors);
    if (!m.channels.empty()) {
        w.family("framecast_channel_messages_total", "counter",
                 "Messages published to a channel (--channel-metrics: the first N channels, "
                 "the rest under channel=\"_other\")");
        for (const auto& ch : m.channels) {
            w.sample("framecast_channel_messages_total", static_cast<double>(ch.published),
                     "channel=\"" + label_value(ch.channel) + "\"");
        }
        w.family("framecast_channel_deliveries_total", "counter",
                 "Messages queued to a channel's subscribers (--channel-metrics)");
        for (const auto& ch : m.channels) {
            w.sample("framecast_channel_deliveries_total", static_cast<double>(ch.deliveries),
                     "channel=\"" + label_value(ch.channel) + "\"");
        }
    }

    w.family("framecast_client_queue_bytes", "histogram", "Bytes waiting in each client's outbound queue");
    std::array<std::uint64_t, queue_buckets.size()> counts{};
    double sum = 0;
    for (auto b : m.queue_bytes) {
        sum += static_cast<double>(b);
        for (std::size_t i = 0; i < queue_buckets.size(); ++i) {
            if (static_cast<double>(b) <= queue_buckets[i]) ++counts[i];
        }
    }
    for (std::size_t i = 0; i < queue_buckets.size(); ++i) {
        w.sample("framecast_client_queue_bytes_bucket", counts[i], fmt::format("le=\"{}\"", queue_buckets[i]));
    }
    w.sample("framecast_client_queue_bytes_bucket", m.queue_bytes.size(), "le=\"+Inf\"");
    w.sample("framecast_client_queue_bytes_sum", sum);
    w.sample("framecast_client_queue_bytes_count", m.queue_bytes.size());

    if (m.resume) render_resume(w, *m.resume, c);
    if (m.publish) render_publish(w, *m.publish, c);
    if (m.backplane) {
        const auto& b = *m.backplane;
        w.gauge("framecast_backplane_up", "1 when the backplane is connected both ways", b.connected ? 1 : 0);
        w.gauge("framecast_backplane_lag_seconds", "Age of the newest backplane entry when delivered", b.lag_seconds);
        w.gauge("framecast_backplane_pending", "Entries (one or more messages each) waiting to be appended to the backplane", b.pending);
        w.counter("framecast_backplane_published_total", "Entries (one or more messages each) appended to the backplane", b.published);
        w.counter("framecast_backplane_delivered_total", "Backplane entries delivered to this node", b.delivered);
        w.counter("framecast_backplane_dropped_total", "Entries not appended: pending queue full", b.dropped);
        w.counter("framecast_backplane_duplicates_total", "Backplane entries skipped as already delivered", b.duplicates);
        w.counter("framecast_backplane_publisher_duplicates_total",
                  "--publish-acks: numbered messages Redis already had from their publisher (not appended again)",
                  b.publisher_duplicates);
        w.counter("framecast_backplane_reconnects_total", "Backplane reconnections", b.reconnects);
        w.counter("framecast_backplane_retried_total",
                  "Appends the backplane answered 'not yet' (Redis loading after a restart, busy): kept and sent again",
                  b.retried);
        w.counter("framecast_backplane_rejected_total",
                  "Backplane entries refused: not whole frames, not one sender's relays, bad name",
                  b.rejected);
        w.counter("framecast_backplane_sequence_jumps_total",
                  "Backplane entries whose node sequence number skipped ahead (delivered)",
                  b.sequence_jumps);
        if (m.resume) {  // --resume --backplane: the stream numbers the messages
            w.counter("framecast_backplane_epoch_changes_total",
                      "Times the backplane stream's history was lost (deleted, or Redis emptied): a new epoch",
                      b.epoch_changes);
            w.counter("framecast_backplane_history_loaded_total",
                      "Backplane entries read at start as history for resuming clients",
                      b.history_loaded);
        }
    }
    return w.out;
}

}  // namespace framecast::io
