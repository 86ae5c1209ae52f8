// The Redis backplane's appending thread (redis_backplane.hpp): pending messages appended in
// pipelined batches (XADD, or with offsets the append script; publishers' units through
// redis_publishers.hpp), popped once Redis answered, retried when it said "not yet".
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

#include "redis_backplane.hpp"

namespace framecast::backplane::redis {

// The appending thread: takes up to append_batch pending messages, appends them in one
// round trip, and pops the ones Redis answered; reconnects (with backoff) when Redis is lost.
// Ends once all is appended after stop(), or when the drain deadline passes.
void redis_backplane::write_loop() {
    context_ptr c;
    connection_log log;
    auto delays = make_backoff();
    std::vector<pending_message> batch;
    batch.reserve(append_batch);
    while (next_append_batch(c != nullptr, batch)) {
        if (!c) {
            c = connect("append", log);
            writer_up_ = c != nullptr;
            pub_scripts_ = {};  // loaded when a publisher's item first needs them
            if (!c) {
                wait_to_retry(delays);
                continue;
            }
            delays.reset();
        }
        if (batch.empty()) continue;
        switch (append(c.get(), batch, log)) {
        case append_result::done:
            delays.reset();
            break;
        case append_result::not_ready:
            wait_to_retry(delays);  // connected, but Redis asked us to come back later
            break;
        case append_result::lost:
            spdlog::warn("backplane {}: lost Redis while appending: {}", describe(), c->errstr);
            c.reset();
            writer_up_ = false;
            break;
        }
    }
}

// Fills `batch` with the oldest pending messages (they stay pending until appended, so a
// failure retries them). Connected, waits for work first; not connected, returns at once
// (connect first, so the metrics' "up" reflects both directions even on a node that has
// published nothing yet). False when the writer is done: all appended after stop(), or the
// drain deadline passed (what is left is dropped, logged and counted).
bool redis_backplane::next_append_batch(bool connected, std::vector<pending_message>& batch) {
    batch.clear();
    std::unique_lock lock(mu_);
    if (connected) cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
    if (pending_.empty() && stopping_) return false;
    if (stopping_ && clock::now() >= drain_deadline_) {
        spdlog::warn("backplane {}: stopping with {} messages not appended", describe(),
                     pending_.size());
        dropped_ += pending_.size();
        pending_.clear();
        pending_bytes_ = 0;
        pending_bytes_shared_ = 0;
        return false;
    }
    // Only this thread pops.
    for (std::size_t i = 0; i < pending_.size() && i < append_batch; ++i) {
        batch.push_back(pending_[i]);
    }
    return true;
}

// Appends `batch` in one round trip, as one transaction: MULTI, the appends, EXEC, pipelined,
// then their replies. The batch lands whole or not at all, so this node's entries stay in
// order: without it, a batch that Redis refused in part as "not yet" (LOADING at the end of a
// restart, BUSY behind a long script) had its later appends land before the refused ones were
// retried, and readers skipped those as already seen (messages lost). Then pops what Redis
// answered. A batch refused as "not yet" (is_not_ready) stays pending, at the front, and is
// retried after a backoff step; an append refused for good (a wrong key type, say) is dropped,
// logged and counted. The connection lost: the whole batch stays pending.
redis_backplane::append_result redis_backplane::append(redisContext* c,
                                                       const std::vector<pending_message>& batch,
                                                       connection_log& log) {
    if (!load_publisher_scripts(c, batch, log)) {
        return c->err ? append_result::lost : append_result::not_ready;
    }
    if (redisAppendCommand(c, "MULTI") != REDIS_OK || !send_appends(c, batch) ||
        redisAppendCommand(c, "EXEC") != REDIS_OK) {
        return append_result::lost;
    }
    batch_replies got;
    if (!read_transaction(c, batch.size(), got, log)) return append_result::lost;
    std::vector<bool> retry(batch.size(), false);
    std::size_t appended = 0, refused = 0;
    bool lost = false, not_ready = false;
    const bool exec_refused = got.exec_refused();
    if (exec_refused) {  // every append queued, EXEC refused: nothing ran
        retry.assign(batch.size(), true);
        not_ready = true;
        say_not_ready(log, got.exec.get(), "appends wait and are retried with backoff");
    }
    for (std::size_t i = 0; i < batch.size() && !exec_refused; ++i) {
        const redisReply* r = got.of(i);
        if (r == nullptr) {  // queued, but another append's refusal aborted the transaction
            retry[i] = true;
        } else if (r->type == REDIS_REPLY_ERROR && reply_text(r).starts_with("NOSCRIPT")) {
            retry[i] = lost = true;  // flushed scripts: reconnect, which loads them again
        } else if (is_not_ready(r)) {
            retry[i] = not_ready = true;
            say_not_ready(log, r, "appends wait and are retried with backoff");
        } else if (batch[i].pub) {
            const int outcome = answered_publisher(r, batch[i]);
            appended += outcome > 0;
            refused += outcome < 0;
        } else if (r->type == REDIS_REPLY_ERROR) {
            spdlog::error("backplane {}: Redis refused an append: {}; message dropped",
                          describe(), reply_text(r));
            ++refused;
        } else {
            if (reply_text(r) == "dup") ++duplicates_;  // a retry that had landed
            ++appended;
        }
    }
    published_ += appended;
    dropped_ += refused;
    retried_ += pop_answered(batch.size(), retry);
    if (lost) return append_result::lost;
    if (not_ready) return append_result::not_ready;
    if (log.logged_not_ready) {
        spdlog::info("backplane {}: Redis is ready again; appending", describe());
        log.logged_not_ready = false;
    }
    return append_result::done;
}

// The replies to MULTI, `n` commands and EXEC; false when the connection was lost before
// EXEC's (whether the transaction ran is then unknown: the batch is sent again, and what had
// landed is recognised as a duplicate). A command Redis refused while queueing it aborts the
// transaction (EXECABORT): its error is its own reply, and the others did not run.
bool redis_backplane::read_transaction(redisContext* c, std::size_t n, batch_replies& out,
                                       connection_log& log) {
    const auto next = [c]() -> reply_ptr {
        void* raw = nullptr;
        if (redisGetReply(c, &raw) != REDIS_OK) return nullptr;
        return reply_ptr(static_cast<redisReply*>(raw));
    };
    reply_ptr multi = next();
    if (!multi) return false;
    out.own.resize(n);
    if (multi->type == REDIS_REPLY_ERROR) {
        // Refused (an ACL without MULTI, say): the appends ran one by one, each reply its
        // own; EXEC's is an error, skipped.
        if (!log.logged_no_multi) {
            spdlog::error("backplane {}: Redis refused MULTI: {}; a batch refused in part as "
                          "not ready may land out of order", describe(), reply_text(multi.get()));
            log.logged_no_multi = true;
        }
        for (auto& r : out.own) {
            if (!(r = next())) return false;
        }
        return next() != nullptr;
    }
    for (auto& r : out.own) {
        reply_ptr queued = next();
        if (!queued) return false;
        if (queued->type == REDIS_REPLY_ERROR) r = std::move(queued);  // else QUEUED
    }
    out.exec = next();
    return out.exec != nullptr;
}

// Entries to keep: the retention, or fewer when that many entries of the average size
// seen so far (this node's appends) would pass retention_bytes.
std::uint64_t redis_backplane::retention_entries(const std::vector<pending_message>& batch) {
    for (const auto& m : batch) {
        if (m.attach) continue;
        const double size = static_cast<double>(m.framed->size() + 64);  // + fields, ids
        average_entry_ = average_entry_ == 0 ? size : 0.99 * average_entry_ + 0.01 * size;
    }
    std::uint64_t n = opts_.retention;
    if (opts_.retention_bytes != 0 && average_entry_ > 0) {
        const auto by_bytes =
            static_cast<std::uint64_t>(static_cast<double>(opts_.retention_bytes) / average_entry_);
        n = std::min(n, std::max<std::uint64_t>(by_bytes, 1));
    }
    return n;
}

// The publishers' scripts, loaded on a connection's first batch that needs them; false
// (logged once per outage: the batch waits a backoff step) when Redis refused.
bool redis_backplane::load_publisher_scripts(redisContext* c,
                                             const std::vector<pending_message>& batch,
                                             connection_log& log) {
    if (!pub_scripts_.append_sha.empty() ||
        std::none_of(batch.begin(), batch.end(), [](const auto& m) { return m.pub != nullptr; })) {
        return true;
    }
    std::string problem;
    if (redis_publishers::load(c, pub_scripts_, problem)) return true;
    if (!log.logged_not_ready) {
        spdlog::warn("backplane {}: cannot load the publishers' scripts: {}; retrying with "
                     "backoff", describe(), problem);
        log.logged_not_ready = true;
    }
    return false;
}

bool redis_backplane::send_appends(redisContext* c, const std::vector<pending_message>& batch) {
    const std::uint64_t keep = retention_entries(batch);
    if (opts_.offsets) return send_numbered_appends(c, batch, keep);
    for (const auto& m : batch) {
        if (m.pub) {
            if (!send_publisher(c, m, keep, {})) return false;
            continue;
        }
        if (redisAppendCommand(c, "XADD %b MAXLEN ~ %llu * n %b s %llu c %llu f %b",
                               addr_.key.data(), addr_.key.size(),
                               static_cast<unsigned long long>(keep),
                               node_id_.data(), node_id_.size(),
                               static_cast<unsigned long long>(m.seq),
                               static_cast<unsigned long long>(m.origin_client),
                               m.framed->data(), m.framed->size()) != REDIS_OK) {
            return false;
        }
    }
    return true;
}

// options::channel_header: the channel an entry is numbered in, the payload of its first
// frame (the node's own frames, checked when it built them); "" without channels.
std::string_view redis_backplane::channel_of(const std::string& framed) const {
    const std::size_t h = opts_.channel_header;
    const std::string_view none("");  // not null: hiredis copies it
    if (h == 0 || framed.size() < h) return none;
    std::size_t n = 0;
    for (std::size_t i = 0; i < h && framed[i] >= '0' && framed[i] <= '9'; ++i) {
        n = n * 10 + static_cast<std::size_t>(framed[i] - '0');
    }
    if (n > framed.size() - h) return none;
    return std::string_view(framed).substr(h, n);
}

// With offsets: the append script (redis_offsets.hpp) numbers each entry (and, with channels,
// numbers it in its channel too).
bool redis_backplane::send_numbered_appends(redisContext* c,
                                            const std::vector<pending_message>& batch,
                                            std::uint64_t keep) {
    const auto t = static_cast<unsigned long long>(now_millis());
    const std::string candidate = random_epoch();
    const auto max_channels = static_cast<unsigned long long>(opts_.max_channels);
    for (const auto& m : batch) {
        if (m.pub) {
            if (!send_publisher(c, m, keep, candidate)) return false;
            continue;
        }
        const auto seq = static_cast<unsigned long long>(m.seq);
        const std::string_view channel = channel_of(*m.framed);
        if (redisAppendCommand(
                c,
                "EVALSHA %s 4 %b %b %b %b %llu %s %llu %b %llu %b %llu n %b s %llu c %llu t %llu "
                "f %b",
                append_sha_.c_str(), addr_.key.data(), addr_.key.size(), seen_key_.data(),
                seen_key_.size(), channels_key_.data(), channels_key_.size(),
                channel_use_key_.data(), channel_use_key_.size(),
                static_cast<unsigned long long>(keep), candidate.c_str(),
                static_cast<unsigned long long>(m.messages), node_id_.data(), node_id_.size(),
                seq, channel.data(), channel.size(), max_channels, node_id_.data(),
                node_id_.size(), seq, static_cast<unsigned long long>(m.origin_client), t,
                m.framed->data(), m.framed->size()) != REDIS_OK) {
            return false;
        }
    }
    return true;
}

// A publisher's attach or unit (redis_publishers.hpp), pipelined with the others.
bool redis_backplane::send_publisher(redisContext* c, const pending_message& m,
                                     std::uint64_t keep, const std::string& candidate) {
    if (m.attach) {
        return redis_publishers::send_attach(c, pub_scripts_, pub_keys_, m.pub->publisher,
                                             m.pub->first, opts_);
    }
    const redis_publishers::append_args a{addr_.key,         seen_key_,        pub_keys_,
                                          keep,              candidate,        opts_.offsets,
                                          node_id_,          m.origin_client,  now_millis(),
                                          opts_,             channels_key_,    channel_use_key_,
                                          channel_of(*m.framed)};
    return redis_publishers::send_append(c, pub_scripts_, a, *m.framed, m.messages, *m.pub);
}

// Its reply, as a receipt for the node: 1 when an entry was appended, -1 when the unit
// was not appended for good (an error, a gap: counted as dropped, as a refused append).
int redis_backplane::answered_publisher(const redisReply* r, const pending_message& m) {
    publisher_receipt receipt;
    if (r->type == REDIS_REPLY_ERROR) {
        spdlog::error("backplane {}: Redis refused a publisher's {}: {}", describe(),
                      m.attach ? "attach" : "append", reply_text(r));
        receipt.what = publisher_receipt::kind::failed;
        receipt.origin_client = m.origin_client;
        receipt.why = "the shared log refused it: " + reply_text(r);
    } else {
        receipt = redis_publishers::receipt_of(r, m.origin_client, m.attach ? nullptr : m.pub.get());
    }
    receipt.messages = m.messages;
    publisher_duplicates_ += receipt.duplicates;
    const int outcome = receipt.entry ? 1
                        : receipt.what == publisher_receipt::kind::failed && !m.attach ? -1
                                                                                   : 0;
    if (receipts_) receipts_(std::move(receipt));
    return outcome;
}

// The answered ones are done, except those marked in `retry` (Redis said "not yet"): they
// stay at the front, in order, with the unanswered rest (retried after a reconnect: an
// append may have landed without its reply, and readers skip a (node, seq) they have seen).
// Returns how many were kept for retry.
std::size_t redis_backplane::pop_answered(std::size_t answered, const std::vector<bool>& retry) {
    std::lock_guard lock(mu_);
    std::vector<pending_message> kept;
    for (std::size_t i = 0; i < answered; ++i) {
        if (retry[i]) {
            kept.push_back(std::move(pending_.front()));
        } else {
            pending_bytes_ -= pending_.front().framed->size();
        }
        pending_.pop_front();
    }
    pending_.insert(pending_.begin(), std::make_move_iterator(kept.begin()),
                    std::make_move_iterator(kept.end()));
    pending_bytes_shared_ = pending_bytes_;
    return kept.size();
}

}  // namespace framecast::backplane::redis
