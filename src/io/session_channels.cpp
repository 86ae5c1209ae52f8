// The session's side of channels mode: command frames go to the channel room; the payload
// frame after a PUB joins this read's unit, which holds consecutive publishes to one channel
// (one match and one queue entry per receiver for all of them, as --publish batches a read).
#include "session.hpp"

namespace framecast::io {

bool session::on_channel_frame(std::string_view payload) {
    auto& seat = channel_seat_;
    if (!seat.expect_payload) {
        // A command. A PUB to another channel than the unit being built ends that unit first.
        const bool ok = ctx_.channels->command(*this, seat, payload);
        if (!ok) return false;
        if (!batch_.empty() && seat.expect_payload && seat.batch_frame != seat.channel_frame) {
            return flush_batch();
        }
        return true;
    }
    seat.expect_payload = false;
    if (ctx_.shutting_down) return true;
    // Publish acks: a payload is a numbered message, refused (dropped) or not. Through a
    // shared log, a unit's messages are the last numbers of its range: the unit ends first.
    // (The unit is cut before this message is numbered: a unit's numbers are its messages'.)
    if (publish_log_ && !batch_.empty() &&
        (seat.drop_payload || batch_.would_exceed(seat.channel_frame->size() + payload.size(),
                                                  relay_unit_bytes(ctx_.opts))) &&
        !flush_batch()) {
        return false;
    }
    if (!publish_accepts() || seat.drop_payload) return true;
    // Heard by nobody here and going nowhere else: counted, never built into a unit. The
    // subscriptions cannot change before this read's unit is flushed (one thread, and this
    // client's own subscriptions do not receive its publishes), so nothing is lost.
    if (batch_.empty() && ctx_.channels->unheard(*this, seat) && ctx_.publishes_stay_local()) {
        ctx_.channels->count_unheard(seat, 1);
        return true;
    }
    if (!batch_.empty() && batch_.would_exceed(seat.channel_frame->size() + payload.size(),
                                               relay_unit_bytes(ctx_.opts)) &&
        !flush_batch()) {
        return false;
    }
    if (batch_.empty()) batch_.reserve(relay_unit_bytes(ctx_.opts) + seat.channel_frame->size());
    seat.batch_frame = seat.channel_frame;
    // The payload as it arrived (the decoder checked its header): no second encode.
    batch_.append_encoded(*seat.channel_frame, decoder_.header_bytes(), payload);
    if (publish_log_) publish_log_end(batch_.size());
    return true;
}

// A RESUME the room holds until the shared log's history is here (channel_room::use_shared_log):
// what this read had before it goes out now, the rest waits with the reader stopped.
bool session::channel_hold(std::span<const char> rest) {
    if (!flush_batch()) return false;
    publish_ack();
    channel_held_.assign(rest.data(), rest.size());
    account_inbound();
    track_mid_frame(true);  // the RESUME ended here: not stuck in a frame while it waits
    return false;
}

void session::release_hold() {
    if (closed_) return;
    const std::string rest = std::move(channel_held_);
    channel_held_.clear();
    if (!rest.empty() && !on_frames(rest)) return;
    if (!closed_) spawn_reader();
}

}  // namespace framecast::io
