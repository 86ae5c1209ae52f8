// A session's part in publish acks (docs/resume.md, "Publishing"): the first frame
// "@publish NONCE PUBLISHER [FIRST]" attaches the connection to its publisher's entry; every
// later message is numbered, and one whose number was accepted before is dropped; after each
// read the publisher gets one cumulative "@ack NONCE SEQ" if anything moved.
// Through a shared log (a backplane: server::set_publish_log) the log keeps the numbers and
// drops the repeats: the answer waits for the log's last number (reading stops meanwhile),
// each unit carries its range of numbers to the log, and acks follow the log's receipts.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "names.hpp"
#include "session.hpp"

namespace framecast::io {

void session::publish_request(std::string_view payload) {
    publisher_table::request req;
    std::string why = publisher_table::parse(payload, req);
    publisher_table::entry* e = nullptr;
    if (why.empty()) {
        // Under --auth a publisher id is scoped by who the client proved to be: nobody can
        // claim another subject's publisher and make the server drop its messages (a FIRST
        // far ahead would). Length-prefixed, so no subject/id pair can spell another's key.
        const std::string key = subject().empty()
                                    ? std::string(req.publisher)
                                    : fmt::format("{}:{}/{}", subject().size(), subject(), req.publisher);
        e = ctx_.publishers->attach(key, req.first, publisher_table::clock::now());
        if (!e) {
            why = fmt::format("the server remembers {} publishers, all connected "
                              "(--max-publishers)", ctx_.publishers->size());
        }
    }
    if (!e) return publish_refuse(why, payload);
    ++ctx_.counters.publish_requests;
    publisher_ = e;
    publish_nonce_.assign(req.nonce);
    if (ctx_.publish_log) {
        // The table still bounds this node's publishers; the numbers are the log's.
        publish_log_ = std::make_unique<publish_log_state>();
        ctx_.publish_log(id(), e->id, req.first);
        return;
    }
    publish_answer(e->last);
}

void session::publish_refuse(const std::string& why, std::string_view payload) {
    ++ctx_.counters.publish_refused;
    spdlog::warn("client {}: publish request refused: {} ('{}')", peer(), why,
                 escape_controls(payload.substr(0, 160), true));
    deliver(make_unit("@publish-error " + why, ctx_.opts.codec));
    publish_refused_ = true;  // what it sends after the request is not published
    stop_receiving();
    drain();
}

void session::publish_answer(std::uint64_t last) {
    publish_next_ = last + 1;
    publish_acked_ = last;
    spdlog::info("client {} publishes as {}: messages from {} on", peer(),
                 escape_controls(publisher_->id, true), publish_next_);
    deliver(make_unit(fmt::format("@published {} {}", publish_nonce_, last), ctx_.opts.codec));
}

// The rest of the read that brought the request waits for the log's answer (a client that
// follows the protocol sends nothing before it), and reading stops: false, as for a close.
bool session::publish_hold(std::span<const char> rest) {
    publish_log_->held.assign(rest.data(), rest.size());
    return false;
}

// A message joined the unit being built, which now ends at `unit_bytes`.
void session::publish_log_end(std::size_t unit_bytes) { publish_log_->ends.push_back(unit_bytes); }

// The unit about to be published: numbers from the first not yet sent up to the last given,
// its messages the last of them (the ones before were refused here: channels).
void session::publish_log_unit() {
    auto& log = *publish_log_;
    log.unit = backplane::publisher_unit{publisher_->id, log.unit_first, publish_next_ - 1,
                                         std::move(log.ends)};
    log.ends.clear();
    log.unit_first = publish_next_;
    ++log.inflight;
}

std::optional<backplane::publisher_unit> session::take_publisher_unit() {
    if (!publish_log_ || !publish_log_->unit) return std::nullopt;
    auto unit = std::move(publish_log_->unit);
    publish_log_->unit.reset();
    return unit;
}

void session::on_publisher_receipt(const backplane::publisher_receipt& r) {
    using kind = backplane::publisher_receipt::kind;
    if (closed_ || !publish_log_) return;
    auto& log = *publish_log_;
    if (r.what == kind::failed) {
        if (!log.waiting) {
            close(close_reason::server_stopping, "publish acks: " + r.why);
            return;
        }
        publish_leave();
        publish_log_.reset();
        return publish_refuse("the shared log did not answer: " + r.why, "@publish");
    }
    if (r.what == kind::attached) {
        if (!log.waiting) return;
        log.waiting = false;
        log.unit_first = r.last + 1;
        log.confirmed = r.last;
        publish_answer(r.last);
        // What came after the request in its read, then reading again.
        const std::string held = std::move(log.held);
        if (!held.empty() && !on_frames(held)) return;
        if (!closed_) spawn_reader();
        return;
    }
    if (log.inflight > 0) --log.inflight;
    log.confirmed = std::max(log.confirmed, r.last);
    ctx_.counters.publish_accepted += r.messages - std::min(r.messages, r.duplicates);
    ctx_.counters.publish_duplicates += r.duplicates;
    publish_ack();
}

bool session::publish_accepts() {
    if (!publisher_) return !publish_refused_;
    if (publish_log_) {  // numbered here, deduplicated by the log
        ++publish_next_;
        return true;
    }
    if (publisher_table::accept(*publisher_, publish_next_++)) {
        ++ctx_.counters.publish_accepted;
        return true;
    }
    ++ctx_.counters.publish_duplicates;
    return false;
}

// Once per read, after its messages were published: one ack covers all of them. It names
// this connection's own last number, never the entry's (which another connection of the same
// publisher may have moved further): the client must never learn of a number it has not sent
// on this connection, or its numbering here would skip it and the server would drop the rest.
// Through a shared log: up to what the log confirmed, or everything numbered once nothing is
// in flight (numbers not in any unit were refused here: handled).
void session::publish_ack() {
    if (!publisher_ || closed_) return;
    std::uint64_t upto = publish_next_ - 1;
    if (publish_log_ && publish_log_->waiting) return;
    if (publish_log_ && publish_log_->inflight > 0) upto = publish_log_->confirmed;
    if (upto <= publish_acked_) return;
    publish_acked_ = upto;
    ++ctx_.counters.publish_acks;
    deliver(make_unit(fmt::format("@ack {} {}", publish_nonce_, publish_acked_), ctx_.opts.codec));
}

void session::publish_leave() {
    if (!publisher_) return;
    ctx_.publishers->detach(*publisher_, publisher_table::clock::now());
    publisher_ = nullptr;
}

}  // namespace framecast::io
