// A session's part in publish acks (docs/resume.md, "Publishing"): the first frame
// "@publish NONCE PUBLISHER [FIRST]" attaches the connection to its publisher's entry; every
// later message is numbered, and one whose number was accepted before is dropped; after each
// read the publisher gets one cumulative "@ack NONCE SEQ" if anything moved.
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
    if (!e) {
        ++ctx_.counters.publish_refused;
        spdlog::warn("client {}: publish request refused: {} ('{}')", peer(), why,
                     escape_controls(payload.substr(0, 160), true));
        deliver(make_unit("@publish-error " + why, ctx_.opts.codec));
        publish_refused_ = true;  // what it sends after the request is not published
        stop_receiving();
        drain();
        return;
    }
    ++ctx_.counters.publish_requests;
    publisher_ = e;
    publish_nonce_.assign(req.nonce);
    publish_next_ = e->last + 1;
    publish_acked_ = e->last;
    spdlog::info("client {} publishes as {}: messages from {} on", peer(),
                 escape_controls(e->id, true), publish_next_);
    deliver(make_unit(fmt::format("@published {} {}", publish_nonce_, e->last), ctx_.opts.codec));
}

bool session::publish_accepts() {
    if (!publisher_) return !publish_refused_;
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
void session::publish_ack() {
    if (!publisher_ || closed_ || publish_next_ - 1 <= publish_acked_) return;
    publish_acked_ = publish_next_ - 1;
    ++ctx_.counters.publish_acks;
    deliver(make_unit(fmt::format("@ack {} {}", publish_nonce_, publish_acked_), ctx_.opts.codec));
}

void session::publish_leave() {
    if (!publisher_) return;
    ctx_.publishers->detach(*publisher_, publisher_table::clock::now());
    publisher_ = nullptr;
}

}  // namespace framecast::io
