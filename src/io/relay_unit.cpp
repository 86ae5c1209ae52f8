#include "framecast/io/relay_unit.hpp"

#include <algorithm>
#include <span>

namespace framecast::io {

std::string& relay_unit_builder::open() {
    if (!buffer_) buffer_ = std::make_shared<std::string>();
    return *buffer_;
}

std::error_code relay_unit_builder::append(std::string_view payload) {
    auto& out = open();
    if (auto ec = append_frame(out, payload, *codec_)) return ec;
    ++messages_;
    return {};
}

void relay_unit_builder::append_encoded(std::string_view a, std::string_view b,
                                        std::string_view c) {
    auto& out = open();
    out.reserve(out.size() + a.size() + b.size() + c.size());
    out.append(a).append(b).append(c);
    ++messages_;
}

relay_unit relay_unit_builder::take() noexcept {
    // A unit reserved large and filled little would hold its reserve in every queue it sits
    // in, beyond what the byte bounds count: give it back (a copy of a small unit).
    if (buffer_ && buffer_->capacity() > 2 * buffer_->size() + 4096) {
        try {
            buffer_->shrink_to_fit();
        } catch (...) {  // out of memory: keep the larger buffer
        }
    }
    relay_unit unit;
    if (messages_ > 0) unit = {shared_frame(std::move(buffer_)), messages_};
    buffer_.reset();
    messages_ = 0;
    return unit;
}

relay_unit make_unit(std::string_view payload, const codec_options& codec) {
    return {std::make_shared<const std::string>(encode_frame(payload, codec)), 1};
}

relay_unit adopt_frames(shared_frame framed, const codec_options& codec,
                        std::size_t frames_per_message) {
    if (!framed) return {};
    std::size_t frames = 0;
    decoder dec(codec, decode_mode::whole);
    std::span<const char> in(framed->data(), framed->size());
    while (dec.next(in) == decode_event::frame) ++frames;
    const std::size_t messages = frames / std::max<std::size_t>(frames_per_message, 1);
    return {std::move(framed), std::max<std::size_t>(messages, 1)};
}

}  // namespace framecast::io
