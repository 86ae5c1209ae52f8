// The Redis backplane's offsets (serve --resume; redis_backplane.hpp): the shared log's
// epoch, checked by the reading thread, and its recent entries loaded at start for resuming
// clients.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <random>
#include <utility>
#include <vector>

#include "framecast/io/protocol_words.hpp"
#include "redis_backplane.hpp"

namespace framecast::backplane::redis {

std::string random_epoch() {
    thread_local std::mt19937_64 engine{(static_cast<std::uint64_t>(std::random_device{}()) << 32) ^
                                        std::random_device{}()};
    char out[20];
    std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(engine()));
    return out;
}

// Offsets: runs the init script (redis_offsets.hpp), which makes the stream and its epoch
// when there is none. The first time, delivers the epoch and the log's recent entries
// (load_history) and starts reading after them; when the epoch changed since (the stream
// was deleted: its history is lost), says so and reads the new stream from its start.
// False (after a backoff step; `c` reset when the connection was lost) when Redis could
// not say; at start, a key that cannot be numbered is fatal (start() throws).
bool redis_backplane::check_epoch(context_ptr& c, connection_log& log, io::backoff& delays,
                                  std::string& last_id) {
    auto r = command(c.get(), "EVALSHA %s 4 %b %b %b %b %s", init_sha_.c_str(), addr_.key.data(),
                     addr_.key.size(), seen_key_.data(), seen_key_.size(), channels_key_.data(),
                     channels_key_.size(), channel_use_key_.data(), channel_use_key_.size(),
                     random_epoch().c_str());
    std::string problem;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        const std::string epoch = reply_text(r->element[0]);
        std::string last = reply_text(r->element[1]);
        if (epoch == epoch_) return true;
        // An epoch as clients will see it (docs/resume.md). Redis is not trusted: a group
        // name that is not one is refused.
        if (!io::is_protocol_token(epoch)) {
            problem = "the stream's epoch group names '" + io_safe(epoch) +
                      "', not 1-64 of [A-Za-z0-9_-]";
        } else if (epoch_.empty()) {
            if (load_history(c.get(), epoch, last)) {
                last_id = last;
                std::lock_guard lock(mu_);
                positioned_ = true;
                cv_.notify_all();
                return true;
            }
            problem = std::string("cannot read the stream's recent entries: ") +
                      (c->err ? c->errstr : "an unexpected reply");
        } else {
            ++epoch_changes_;
            spdlog::warn("backplane {}: the stream's history was lost (deleted, or Redis "
                         "restarted without persistence): epoch {} is now {}",
                         describe(), epoch_, epoch);
            epoch_ = epoch;
            last_id = "0-0";
            message m;
            m.what = message::kind::epoch;
            m.epoch = epoch;
            m.offset = 1;
            deliver_(std::move(m));
            return true;
        }
    } else if (r && r->type == REDIS_REPLY_ERROR && reply_text(r.get()).starts_with("FCREFUSE")) {
        problem = reply_text(r.get()).substr(9);
        if (!positioned_once()) {
            std::lock_guard lock(mu_);
            fatal_ = problem;
            given_up_ = true;  // start() says why and stops
            cv_.notify_all();
            return false;
        }
    } else if (is_not_ready(r.get())) {
        say_not_ready(log, r.get(), "reading starts once it is");
    } else {
        problem = r ? reply_text(r.get()) : c->errstr;
        if (!r || reply_text(r.get()).starts_with("NOSCRIPT")) c.reset();
        if (!r) reader_up_ = false;
    }
    if (!problem.empty() && refuse_log_.allow(refuse_more_)) {
        spdlog::error("backplane {}: cannot number the stream: {}; retrying with backoff{}",
                      describe(), problem, refuse_more_);
    }
    wait_to_retry(delays);
    return false;
}

bool redis_backplane::positioned_once() {
    std::lock_guard lock(mu_);
    return positioned_;
}

// Offsets, at start: the stream's most recent entries up to `last` (up to
// history_messages entries, or history_bytes), read newest first in bounded pieces, then
// delivered oldest first as kind::history after the kind::epoch notice, so this node can
// serve resumes from before it started (a restarted node sees no false gap).
bool redis_backplane::load_history(redisContext* c, const std::string& epoch, std::string& last) {
    // Channels: every channel's last offset, and the last ID they are as of (read from there).
    std::vector<message> channels;
    if (opts_.channel_header != 0 && !snapshot_channels(c, epoch, last, channels)) return false;
    std::vector<std::pair<std::string, parsed_entry>> tail;
    std::uint64_t bytes = 0;
    std::string end = last;
    while (last != "0-0" && tail.size() < opts_.history_messages &&
           bytes < opts_.history_bytes) {
        auto r = command(c, "XREVRANGE %b %s - COUNT %d", addr_.key.data(), addr_.key.size(),
                         end.c_str(), 128);
        if (!r || r->type != REDIS_REPLY_ARRAY) return false;
        if (r->elements == 0) break;
        for (std::size_t i = 0; i < r->elements; ++i) {
            const redisReply* entry = r->element[i];
            end = "(" + reply_text(entry->element[0]);
            parsed_entry e;
            if (!parse_entry(end.substr(1), entry->element[1], e) || e.epoch != epoch) continue;
            bytes += e.m.framed->size();
            tail.emplace_back(end.substr(1), std::move(e));
        }
    }
    epoch_ = epoch;
    message notice;
    notice.what = message::kind::epoch;
    notice.epoch = epoch;
    notice.offset = tail.empty() ? id_sequence(last) + 1 : tail.back().second.m.offset;
    notice.history_follows = !tail.empty() || !channels.empty();
    deliver_(std::move(notice));
    for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
        ++history_loaded_;
        deliver_entry(it->first, std::move(it->second), message::kind::history);
    }
    for (auto& m : channels) deliver_(std::move(m));
    if (!tail.empty() || !channels.empty()) {  // the history is all there: resumes can be answered
        message done;
        done.what = message::kind::epoch;
        done.epoch = epoch;
        deliver_(std::move(done));
    }
    spdlog::info("backplane {}: epoch {}, {} recent entries read for resuming clients, next "
                 "offset after {}", describe(), epoch, tail.size(), last);
    return true;
}

// Channels, at start: the offsets the stream's script keeps per channel, with the last ID they
// are as of, in one atomic step (channels_snapshot_script): a channel this node holds no entry
// of still resumes from its true next offset. False when Redis could not say, or the stream
// is not (or no longer) of `epoch`: check_epoch tries again.
bool redis_backplane::snapshot_channels(redisContext* c, const std::string& epoch,
                                        std::string& last, std::vector<message>& channels) {
    // The script's own bound (a channel per field, and the floor): the node takes no more.
    const auto most = static_cast<unsigned long long>(opts_.max_channels + 1);
    auto r = command(c, "EVAL %s 2 %b %b %llu", redis_offsets::channels_snapshot_script.c_str(),
                     addr_.key.data(), addr_.key.size(), channels_key_.data(),
                     channels_key_.size(), most);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return false;
    if (reply_text(r->element[0]) != epoch) return false;  // made again meanwhile
    last = reply_text(r->element[1]);
    const redisReply* h = r->element[2];
    if (h->type == REDIS_REPLY_INTEGER) {
        // Not written by nodes with this --resume-channels (or not by framecast): channels
        // this node does not hold wait for the log instead (docs/resume.md).
        spdlog::warn("backplane {}: {} numbers {} channels, more than --resume-channels ({}): "
                     "their offsets are not read at start", describe(), channels_key_,
                     h->integer, opts_.max_channels);
        return true;
    }
    if (h->type != REDIS_REPLY_ARRAY) return false;
    channels.reserve(h->elements / 2 + 1);
    bool floor = false;  // none yet: no channel was forgotten, every one starts at 1
    for (std::size_t i = 0; i + 1 < h->elements; i += 2) {
        message m;
        m.what = message::kind::channel;
        m.channel = reply_text(h->element[i]);
        m.offset = std::strtoull(reply_text(h->element[i + 1]).c_str(), nullptr, 10);
        floor = floor || m.channel.empty();
        channels.push_back(std::move(m));
    }
    if (!floor) {
        message m;
        m.what = message::kind::channel;
        channels.push_back(std::move(m));
    }
    return true;
}

}  // namespace framecast::backplane::redis
