#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <system_error>

#include "framecast/codec.hpp"
#include "utf8.hpp"

namespace framecast {
namespace {

bool is_space(unsigned char c) noexcept { return c == ' ' || (c >= '\t' && c <= '\r'); }
bool is_digit(unsigned char c) noexcept { return c >= '0' && c <= '9'; }


}  // namespace

decoder::decoder(codec_options opts, decode_mode mode)
    : opts_(opts), mode_(mode), fast_whole_(mode == decode_mode::whole && opts.unit == length_unit::bytes) {
    if (opts_.header_size < min_header_size || opts_.header_size > max_header_size) {
        fail(errc::invalid_header_size,
             "header size " + std::to_string(opts_.header_size) + " is outside 1..20");
    }
    update_fast_ready();
}

decode_event decoder::fail(errc e, std::string message) {
    state_ = state::failed;
    fast_ready_ = false;
    error_ = e;
    error_message_ = std::move(message);
    payload_ = {};
    return decode_event::error;
}

decode_event decoder::next_general(std::span<const char>& in) {
    // Cleared first: if advance() throws (bad_alloc while gathering a frame), the flag must not
    // stay set with the decoder inside a payload.
    fast_ready_ = false;
    const auto ev = advance(in);
    update_fast_ready();
    return ev;
}

decode_event decoder::advance(std::span<const char>& in) {
    if (state_ == state::failed) return decode_event::error;
    if (release_buffer_) {  // the last frame was a view into buffer_: it may go now
        payload_ = {};      // and payload() with it, not a view into freed memory
        buffer_.reset();
        capacity_ = 0;
        release_buffer_ = false;
    }
    if (pending_end_) {
        pending_end_ = false;
        payload_ = {};
        return decode_event::end;
    }
    if (state_ == state::header) {
        const std::size_t h = opts_.header_size;
        // The fast path again (next() tries it inline, but not after a large frame or an end).
        if (header_fill_ == 0 && fast_whole_ && try_whole_frame(in)) return decode_event::frame;
        const char* header;
        if (header_fill_ == 0 && in.size() >= h) {
            header = in.data();  // fast path: the whole header is in this read
            in = in.subspan(h);
        } else {
            std::size_t take = std::min(h - header_fill_, in.size());
            // An empty span may have a null data(): memcpy(dst, nullptr, 0) is undefined.
            if (take != 0) std::memcpy(header_.data() + header_fill_, in.data(), take);
            header_fill_ += take;
            in = in.subspan(take);
            if (header_fill_ < h) return decode_event::need_more;
            header = header_.data();
        }
        header_fill_ = 0;
        if (auto ev = on_header_complete(header); ev != decode_event::need_more) return ev;
    }
    return take_payload(in);
}

decode_event decoder::on_header_complete(const char* header) {
    const std::size_t h = opts_.header_size;
    std::memcpy(header_bytes_.data(), header, h);
    header_bytes_size_ = h;
    const auto* p = reinterpret_cast<const unsigned char*>(header);
    if (detail::canonical_length(p, h, h, opts_.max_message, length_)) return start_payload();
    std::size_t i = 0;
    while (i < h && is_space(p[i])) ++i;
    const std::size_t first_digit = i;
    std::uint64_t value = 0;
    bool overflow = false;
    for (; i < h && is_digit(p[i]); ++i) {
        unsigned d = p[i] - '0';
        if (value > (std::numeric_limits<std::uint64_t>::max() - d) / 10) overflow = true;
        value = value * 10 + d;
    }
    const bool had_digits = i > first_digit;
    while (i < h && is_space(p[i])) ++i;

    auto shown = [&] { return escape_bytes({header, h}); };
    if (i < h || !had_digits) {
        if (i == h) return fail(errc::header_no_digits, "malformed frame header " + shown() + ": no digits");
        unsigned char c = p[i];
        std::string where = " at offset " + std::to_string(i);
        if (c == '+' || c == '-') {
            return fail(errc::header_sign, "malformed frame header " + shown() + ": sign" + where);
        }
        if (c == '_') {
            return fail(errc::header_underscore,
                        "malformed frame header " + shown() + ": underscore" + where);
        }
        if (is_digit(c)) {
            return fail(errc::header_interior_space,
                        "malformed frame header " + shown() + ": white space between digits" + where);
        }
        if (c >= 0x80) {
            return fail(errc::header_non_ascii,
                        "malformed frame header " + shown() + ": non-ASCII byte" + where);
        }
        return fail(errc::header_invalid_char,
                    "malformed frame header " + shown() + ": invalid character" + where);
    }
    if (overflow || value > opts_.max_message) {
        return fail(errc::message_too_large,
                    "frame header " + shown() + " announces " +
                        (overflow ? std::string("a length beyond 2^64") : std::to_string(value)) +
                        (opts_.unit == length_unit::bytes ? " bytes" : " code points") +
                        ", above the maximum of " + std::to_string(opts_.max_message));
    }
    length_ = value;
    return start_payload();
}

decode_event decoder::start_payload() noexcept {
    received_units_ = 0;
    received_bytes_ = 0;
    utf8_ = {};
    state_ = state::payload;
    if (mode_ == decode_mode::streaming) {
        payload_ = {};
        return decode_event::begin;
    }
    return decode_event::need_more;  // go on to the payload
}

bool decoder::payload_complete() const noexcept {
    if (opts_.unit == length_unit::bytes) return received_bytes_ == length_;
    return received_units_ == length_ && utf8_.need == 0;
}

std::ptrdiff_t decoder::scan_code_points(const char* p, std::size_t n) noexcept {
    std::size_t i = 0;
    while (i < n && !payload_complete()) {
        switch (detail::utf8_feed(utf8_, static_cast<unsigned char>(p[i]))) {
            case detail::utf8_step::code_point: ++received_units_; break;
            case detail::utf8_step::more: break;
            case detail::utf8_step::invalid: return -1;
        }
        ++i;
    }
    return static_cast<std::ptrdiff_t>(i);
}

decode_event decoder::take_payload(std::span<const char>& in) {
    std::size_t take;
    if (opts_.unit == length_unit::bytes) {
        take = static_cast<std::size_t>(
            std::min<std::uint64_t>(length_ - received_bytes_, in.size()));
    } else {
        // Scan no further than max_message bytes of payload, so the first fault by stream
        // position decides the error whatever the chunking.
        const auto allowed = static_cast<std::size_t>(
            std::min<std::uint64_t>(opts_.max_message - received_bytes_, in.size()));
        auto before = received_units_;
        auto n = scan_code_points(in.data(), allowed);
        if (n < 0) {
            return fail(errc::invalid_utf8,
                        "payload is not valid UTF-8 after code point " + std::to_string(before));
        }
        take = static_cast<std::size_t>(n);
        if (take == allowed && allowed < in.size() && !payload_complete()) {
            return fail(errc::message_too_large,
                        "payload of " + std::to_string(length_) + " code points runs past " +
                            std::to_string(opts_.max_message) + " bytes, the maximum");
        }
    }
    const bool first_bytes = received_bytes_ == 0;
    const char* data = in.data();
    received_bytes_ += take;
    if (opts_.unit == length_unit::bytes) received_units_ = received_bytes_;
    in = in.subspan(take);
    const bool complete = payload_complete();

    if (mode_ == decode_mode::streaming) {
        if (complete) state_ = state::header;
        if (take == 0) {
            payload_ = {};
            return complete ? decode_event::end : decode_event::need_more;
        }
        pending_end_ = complete;
        payload_ = {data, take};
        return decode_event::data;
    }

    if (complete && first_bytes) {
        payload_ = {data, take};  // the whole frame lies in the caller's bytes: no copy
    } else {
        if (first_bytes) fill_ = 0;
        if (capacity_ - fill_ < take) {
            // Grow geometrically, never past the payload's size in bytes (in code-point mode
            // only max_message bounds it: a code point takes up to 4 bytes).
            const auto limit = static_cast<std::size_t>(
                opts_.unit == length_unit::bytes ? length_ : opts_.max_message);
            reserve_buffer(std::max(fill_ + take, std::min(limit, 2 * capacity_)));
        }
        if (take != 0) std::memcpy(buffer_.get() + fill_, data, take);
        fill_ += take;
        if (!complete) return decode_event::need_more;
        payload_ = {buffer_.get(), fill_};
        release_buffer_ = capacity_ > retain_;
    }
    state_ = state::header;
    return decode_event::frame;
}

void decoder::reserve_buffer(std::size_t n) {
    if (n <= capacity_) return;
    auto bigger = std::make_unique_for_overwrite<char[]>(n);
    if (fill_ != 0) std::memcpy(bigger.get(), buffer_.get(), fill_);
    buffer_ = std::move(bigger);
    capacity_ = n;
}

std::span<char> decoder::payload_space() {
    if (state_ != state::payload || mode_ != decode_mode::whole ||
        opts_.unit != length_unit::bytes) {
        return {};
    }
    if (received_bytes_ == 0) fill_ = 0;
    const auto length = static_cast<std::size_t>(length_);
    reserve_buffer(length);
    return {buffer_.get() + fill_, length - fill_};
}

decode_event decoder::commit(std::size_t n) {
    if (state_ == state::failed) return decode_event::error;
    if (state_ != state::payload || mode_ != decode_mode::whole ||
        opts_.unit != length_unit::bytes || n > length_ - received_bytes_ ||
        n > capacity_ - fill_) {
        // A caller's bug, not the peer's: the stream position is lost all the same.
        fail(errc::truncated_frame, "commit(" + std::to_string(n) + ") beyond payload_space()");
        error_ = std::make_error_code(std::errc::invalid_argument);
        return decode_event::error;
    }
    fill_ += n;
    received_bytes_ += n;
    received_units_ = received_bytes_;
    if (!payload_complete()) return decode_event::need_more;
    payload_ = {buffer_.get(), fill_};
    release_buffer_ = capacity_ > retain_;
    state_ = state::header;
    update_fast_ready();
    return decode_event::frame;
}

std::error_code decoder::finish() {
    if (state_ == state::failed) return error_;
    if (state_ == state::header && header_fill_ == 0) return {};
    truncation t;
    std::string message = "connection closed ";
    if (state_ == state::header) {
        t = {true, header_fill_, opts_.header_size, length_unit::bytes};
        std::memcpy(header_bytes_.data(), header_.data(), header_fill_);
        header_bytes_size_ = header_fill_;
        message += to_string(t) + " " + escape_bytes(header_bytes());
    } else {
        t = {false, received_units_, length_, opts_.unit};
        message += to_string(t);
    }
    fail(errc::truncated_frame, std::move(message));
    truncation_ = t;
    return error_;
}

std::string to_string(const truncation& t) {
    const char* what = t.in_header                    ? " header bytes"
                       : t.unit == length_unit::bytes ? " payload bytes"
                                                      : " payload code points";
    return "after " + std::to_string(t.have) + " of " + std::to_string(t.want) + what;
}

}  // namespace framecast
