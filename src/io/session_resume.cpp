// A session's part in resume (docs/resume.md): its first frame may be a request. Input that is
// otherwise discarded is streamed, never buffered, so the first frame is captured here only
// up to a request's longest length.
#include "session.hpp"

namespace framecast::io {

namespace {
// "@resume " + NONCE + EPOCH + LAST, each at most 64 characters, and spaces.
constexpr std::size_t max_request = 8 + 3 * 64 + 2 + 20;
}  // namespace

bool session::resume_first_frame(decode_event ev) {
    if (ev == decode_event::begin) {
        first_frame_.clear();
        first_frame_capture_ = decoder_.length() <= max_request;
        return true;
    }
    if (ev == decode_event::data) {
        if (first_frame_capture_) first_frame_.append(decoder_.payload());
        return true;
    }
    // The first frame is complete (whole: `frame`; streamed: `end`).
    first_frame_open_ = false;
    const std::string_view payload =
        ev == decode_event::frame ? decoder_.payload() : std::string_view(first_frame_);
    const bool whole = (ev == decode_event::frame || first_frame_capture_) &&
                       payload.size() <= max_request;
    const bool resume = whole && ctx_.resume && resume_room::is_request(payload);
    // Publish acks (session_publish.cpp) share this first-frame check.
    const bool publish = whole && ctx_.publishers && publisher_table::is_request(payload);
    if (!resume && !publish) return false;  // an ordinary first frame: handled as it always was
    ++ctx_.counters.messages_in;
    if (publish) {
        publish_request(payload);
    } else {
        ctx_.resume->request(*this, resume_seat_, payload);
    }
    first_frame_.clear();
    first_frame_.shrink_to_fit();
    return true;
}

}  // namespace framecast::io
