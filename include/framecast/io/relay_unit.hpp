// The unit that travels from a publisher (a client's read, a source, a backplane entry) to
// every subscriber's queue: encoded bytes, shared and immutable, and how many messages they
// hold. Built in one place (relay_unit_builder) and never re-encoded or re-parsed on the way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "framecast/codec.hpp"

namespace framecast::io {

// One or more whole encoded frames (header + payload), immutable, shared by every queue.
using shared_frame = std::shared_ptr<const std::string>;

struct relay_unit {
    shared_frame bytes;
    std::size_t messages = 0;
    // Who published it: the id of the client it came from; 0 when that cannot be told (a
    // source, the backplane, a notice). Backpressure holds back the publishers that fill a queue.
    std::uint64_t origin = 0;

    explicit operator bool() const noexcept { return bytes != nullptr; }
    std::size_t size() const noexcept { return bytes ? bytes->size() : 0; }
};

// Appends frames into one buffer and counts the messages they carry.
class relay_unit_builder {
public:
    explicit relay_unit_builder(const codec_options& codec) : codec_(&codec) {}

    // Encodes `payload` as one frame, one message. On error (the length cannot be announced)
    // nothing is appended.
    std::error_code append(std::string_view payload);
    // One message already encoded, in up to three pieces copied as they are (a chat relay:
    // the username frame, then the message's header and payload exactly as received).
    void append_encoded(std::string_view a, std::string_view b = {}, std::string_view c = {});

    // Room for `bytes` in the unit being built (saves the regrowth copies of a unit filled
    // with many small frames). take() gives back most of a reserve left unused.
    void reserve(std::size_t bytes) { open().reserve(bytes); }
    // Bytes appended so far.
    std::size_t size() const noexcept { return buffer_ ? buffer_->size() : 0; }
    bool empty() const noexcept { return messages_ == 0; }
    // Whether a frame carrying `payload_size` more bytes would take the unit past `limit`.
    bool would_exceed(std::size_t payload_size, std::size_t limit) const noexcept {
        return size() + codec_->header_size + payload_size > limit;
    }
    // The unit built so far (empty: a null unit); the builder starts over.
    relay_unit take() noexcept;

private:
    std::string& open();
    const codec_options* codec_;
    std::shared_ptr<std::string> buffer_;
    std::size_t messages_ = 0;
};

// Encodes `payload` as a unit of one message; throws std::system_error if the length does not
// fit the header.
relay_unit make_unit(std::string_view payload, const codec_options& codec = {});

// Adopts bytes that hold whole frames encoded elsewhere (a backplane entry), counting them
// with the codec's decoder: one message per frame, or one per unit when `frames_per_message`
// says a message is a pair of frames (a chat relay). A null `framed` gives a null unit.
relay_unit adopt_frames(shared_frame framed, const codec_options& codec,
                        std::size_t frames_per_message = 1);

}  // namespace framecast::io
