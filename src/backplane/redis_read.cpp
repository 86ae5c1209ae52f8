// The Redis backplane's reading thread (redis_backplane.hpp): where reading starts, the
// XREAD BLOCK loop, each entry parsed, checked against its node's sequence and delivered.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <utility>

#include "framecast/codec.hpp"
#include "redis_backplane.hpp"

namespace framecast::backplane::redis {

namespace {

// Milliseconds part of a stream ID "1700000000000-3".
std::uint64_t id_millis(const std::string& id) {
    return std::strtoull(id.c_str(), nullptr, 10);
}

}  // namespace

std::uint64_t id_sequence(const std::string& id) {
    const auto dash = id.find('-');
    return dash == std::string::npos ? 0 : std::strtoull(id.c_str() + dash + 1, nullptr, 10);
}

std::uint64_t now_millis() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now().time_since_epoch()).count());
}

// Finds where this node starts reading: after the stream's newest entry. False (after a
// backoff step; `c` reset when the connection was lost) when Redis could not say.
bool redis_backplane::position_at_end(context_ptr& c, connection_log& log, io::backoff& delays,
                                      std::string& last_id) {
    auto r = command(c.get(), "XREVRANGE %b + - COUNT 1", addr_.key.data(), addr_.key.size());
    if (r && r->type == REDIS_REPLY_ARRAY) {
        last_id = r->elements > 0 ? reply_text(r->element[0]->element[0]) : "0-0";
        std::lock_guard lock(mu_);
        positioned_ = true;
        cv_.notify_all();
        return true;
    }
    if (is_not_ready(r.get())) {
        say_not_ready(log, r.get(), "reading starts once it is");
    } else {
        spdlog::warn("backplane {}: cannot read the stream's end: {}", describe(),
                     r ? reply_text(r.get()) : c->errstr);
        if (!r) {
            c.reset();
            reader_up_ = false;
        }
    }
    wait_to_retry(delays);
    return false;
}

void redis_backplane::read_loop() {
    context_ptr c;
    connection_log log;
    auto delays = make_backoff();
    std::string last_id;  // empty until the starting position is known
    // Offsets: the log's epoch is checked on every (re)connection and whenever a read
    // waited in vain (a deleted stream sends nothing), and on an entry of another epoch.
    bool epoch_checked = false;
    std::string suspect;  // an entry of another epoch while the epoch had not changed
    const int block_ms = std::max(1, static_cast<int>(opts_.block_seconds * 1000));
    while (!stopping_ && !given_up_) {
        if (!c) {
            c = connect("read", log);
            reader_up_ = c != nullptr;
            if (!c) {
                wait_to_retry(delays);
                continue;
            }
            delays.reset();
        }
        if (opts_.offsets) {
            if (!epoch_checked && !check_epoch(c, log, delays, last_id)) continue;
            epoch_checked = true;
        } else if (last_id.empty() && !position_at_end(c, log, delays, last_id)) {
            continue;
        }
        auto r = command(c.get(), "XREAD COUNT 1024 BLOCK %d STREAMS %b %s", block_ms,
                         addr_.key.data(), addr_.key.size(), last_id.c_str());
        if (!r) {
            spdlog::warn("backplane {}: lost Redis while reading: {}; resuming after {} once "
                         "back", describe(), c->errstr, last_id);
            c.reset();
            reader_up_ = false;
            epoch_checked = false;
            continue;
        }
        if (is_not_ready(r.get())) {
            say_not_ready(log, r.get(), "reading resumes after " + last_id + " once it is");
            wait_to_retry(delays);
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            spdlog::error("backplane {}: Redis refused a read: {}", describe(), reply_text(r.get()));
            c.reset();
            epoch_checked = false;
            wait_to_retry(delays);
            continue;
        }
        log.logged_not_ready = false;
        delays.reset();
        if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {  // BLOCK timed out
            epoch_checked = false;
            continue;
        }
        const redisReply* entries = r->element[0]->element[1];
        for (std::size_t i = 0; i < entries->elements; ++i) {
            const redisReply* entry = entries->element[i];
            const std::string id = reply_text(entry->element[0]);
            parsed_entry e;
            if (!parse_entry(id, entry->element[1], e)) {
                last_id = id;
                continue;
            }
            if (opts_.offsets && e.epoch != epoch_ && id != suspect) {
                // The stream was deleted and made again (or the entry is forged): check
                // the epoch before going on; this entry is read again either way.
                suspect = id;
                epoch_checked = false;
                break;
            }
            last_id = id;
            if (opts_.offsets && e.epoch != epoch_) {
                ++rejected_;
                spdlog::warn("backplane {}: entry {} claims epoch '{}', the stream's is {}; "
                             "skipped", describe(), id, io_safe(e.epoch), epoch_);
                continue;
            }
            deliver_entry(id, std::move(e), message::kind::live);
        }
    }
}

bool redis_backplane::accept_sequence(const std::string& id, const std::string& node,
                                      std::uint64_t seq) {
    if (seq == 0) return true;  // an entry without a sequence number: nothing to check
    auto& s = last_seq_[node];
    if ((s.last != 0 && seq <= s.last) || seq == s.jumped_to) {
        ++duplicates_;
        return false;
    }
    if (seq == s.last + 1 || (s.jumped_to != 0 && seq == s.jumped_to + 1)) {
        s.last = seq;
        s.jumped_to = 0;
        return true;
    }
    // The first entry seen from a node (we joined mid-stream) is not adopted either: it
    // may be forged. Only a jump from a known position is logged and counted.
    if (s.last != 0) {
        ++jumps_;
        if (jump_log_.allow(jump_more_)) {
            spdlog::warn("backplane {}: entry {} of node {} has sequence number {}, expected "
                         "{}; delivered, not adopted until the node's next entry follows "
                         "it{}",
                         describe(), id, io_safe(node), seq, s.last + 1, jump_more_);
        }
    }
    s.jumped_to = seq;
    return true;
}

std::string redis_backplane::io_safe(const std::string& s) {
    return framecast::escape_controls(s, true);
}

// False (logged) when the entry cannot be delivered: no payload, or (offsets) an ID that
// is not an offset.
bool redis_backplane::parse_entry(const std::string& id, const redisReply* fields,
                                  parsed_entry& e) {
    if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY) return false;
    for (std::size_t k = 0; k + 1 < fields->elements; k += 2) {
        std::string name = reply_text(fields->element[k]);
        const redisReply* v = fields->element[k + 1];
        if (name == "f") {
            e.m.framed = std::make_shared<const std::string>(v->str, v->len);
        } else if (name == "n") {
            e.m.origin_node = reply_text(v);
        } else if (name == "s") {
            e.seq = std::strtoull(reply_text(v).c_str(), nullptr, 10);
        } else if (name == "c") {
            e.m.origin_client = std::strtoull(reply_text(v).c_str(), nullptr, 10);
        } else if (name == "e") {
            e.epoch = reply_text(v);
        } else if (name == "t") {
            e.millis = std::strtoull(reply_text(v).c_str(), nullptr, 10);
        } else if (name == "k") {
            e.m.channel_offset = std::strtoull(reply_text(v).c_str(), nullptr, 10);
        }
    }
    if (!e.m.framed) {
        spdlog::warn("backplane {}: entry {} has no payload field; skipped", describe(), id);
        return false;
    }
    if (!opts_.offsets) {
        e.millis = id_millis(id);
        return true;
    }
    e.m.offset = id_sequence(id);
    if (id_millis(id) != 0 || e.m.offset == 0) {
        ++rejected_;
        spdlog::warn("backplane {}: entry {} is not numbered by serve --resume; skipped",
                     describe(), id);
        return false;
    }
    if (opts_.channel_header != 0 && (e.m.channel_offset == 0 || e.m.channel_offset > e.m.offset)) {
        // A channel's offsets never pass the stream's (each message takes one of each).
        ++rejected_;
        spdlog::warn("backplane {}: entry {} has {} (not written by serve --channels "
                     "--resume); skipped", describe(), id,
                     e.m.channel_offset == 0 ? "no channel offset"
                                             : "a channel offset past its offset");
        return false;
    }
    return true;
}

void redis_backplane::deliver_entry(const std::string& id, parsed_entry e, message::kind what) {
    if (!accept_sequence(id, e.m.origin_node, e.seq)) return;
    const auto now_ms = now_millis();
    lag_ms_ = now_ms > e.millis ? now_ms - e.millis : 0;
    e.m.what = what;
    if (what == message::kind::live) ++delivered_;
    deliver_(std::move(e.m));
}

}  // namespace framecast::backplane::redis
