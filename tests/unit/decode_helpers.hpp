// Test helpers: feed a byte stream to a decoder in a given chunking and collect the result.
#pragma once

#include <framecast/codec.hpp>

#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace framecast::test {

// One frame of `payload` with the default header, as the tests' peers send it.
inline std::string frame(std::string_view payload) { return encode_frame(payload); }

struct decoded {
    std::vector<std::string> frames;
    std::error_code error;  // first error, if any (finish() included when `at_eof`)
    std::string message;
};

// Feeds `wire` cut at the given chunk sizes (the last one repeats), whole-frame mode.
inline decoded decode_chunked(std::string_view wire, const std::vector<std::size_t>& chunks,
                              codec_options opts = {}, bool at_eof = true) {
    decoded out;
    decoder dec(opts);
    std::size_t pos = 0, k = 0;
    while (pos < wire.size() && !out.error) {
        std::size_t n = std::min(chunks[std::min(k++, chunks.size() - 1)], wire.size() - pos);
        std::span<const char> in{wire.data() + pos, n};
        pos += n;
        for (;;) {
            auto ev = dec.next(in);
            if (ev == decode_event::need_more) break;
            if (ev == decode_event::error) {
                out.error = dec.error();
                out.message = dec.error_message();
                break;
            }
            out.frames.emplace_back(dec.payload());
        }
    }
    if (!out.error && at_eof) {
        out.error = dec.finish();
        out.message = dec.error_message();
    }
    return out;
}

inline decoded decode_whole(std::string_view wire, codec_options opts = {}) {
    return decode_chunked(wire, {wire.size() ? wire.size() : 1}, opts);
}

// Channels: every frame received, as (channel, payload) pairs (a trailing half-pair dropped).
using pair_list = std::vector<std::pair<std::string, std::string>>;
inline pair_list pairs_of(std::string_view wire) {
    const auto frames = decode_chunked(wire, {wire.size() ? wire.size() : 1}, {}, false).frames;
    pair_list out;
    for (std::size_t i = 0; i + 1 < frames.size(); i += 2) out.emplace_back(frames[i], frames[i + 1]);
    return out;
}

// Streaming mode: reassembles the pieces, checking begin/data/end order.
inline decoded decode_streaming(std::string_view wire, std::size_t chunk, codec_options opts = {}) {
    decoded out;
    decoder dec(opts, decode_mode::streaming);
    bool in_frame = false;
    std::string current;
    for (std::size_t pos = 0; pos < wire.size() && !out.error; pos += chunk) {
        std::span<const char> in{wire.data() + pos, std::min(chunk, wire.size() - pos)};
        for (;;) {
            auto ev = dec.next(in);
            if (ev == decode_event::need_more) break;
            if (ev == decode_event::error) {
                out.error = dec.error();
                out.message = dec.error_message();
                break;
            }
            if (ev == decode_event::begin) {
                if (in_frame) out.message = "begin inside a frame";
                in_frame = true;
                current.clear();
            } else if (ev == decode_event::data) {
                if (!in_frame) out.message = "data outside a frame";
                current.append(dec.payload());
            } else if (ev == decode_event::end) {
                if (!in_frame) out.message = "end outside a frame";
                in_frame = false;
                out.frames.push_back(current);
            } else {
                out.message = "whole frame event in streaming mode";
            }
        }
    }
    if (!out.error) {
        out.error = dec.finish();
        if (out.error) out.message = dec.error_message();
    }
    return out;
}

}  // namespace framecast::test
