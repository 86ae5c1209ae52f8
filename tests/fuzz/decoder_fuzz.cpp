// libFuzzer target: the decoder in every mode (whole, streaming; bytes, code points; header
// sizes 1..20; small and large maxima; random chunking), driven by next() and by
// for_each_frame(), must agree with the reference decoder on the same input: the same frames,
// or the same error. No crash, no sanitizer report.
#include <cstdint>
#include <cstdlib>
#include <cstdio>

#include "reference_decoder.hpp"

using namespace framecast;
using framecast::fuzz::reference_decode;

namespace {

[[noreturn]] void mismatch(const char* what) {
    std::fprintf(stderr, "decoder and reference disagree: %s\n", what);
    std::abort();
}

struct outcome {
    std::vector<std::string> frames;
    std::error_code error;
    std::string last_header;   // header_bytes() at the end: the same however the stream was fed
    std::uint64_t last_length = 0;
};

outcome run(std::string_view wire, const codec_options& opts, decode_mode mode, std::uint32_t seed,
            bool batch) {
    outcome out;
    decoder dec(opts, mode);
    // Sometimes keep no gathering buffer between frames, so the release path runs too.
    if (seed & 0x100u) dec.retain_capacity(0);
    std::string current;
    bool in_frame = false;
    std::size_t pos = 0;
    do {
        seed = seed * 1103515245u + 12345u;
        std::size_t n = std::min<std::size_t>(1 + (seed >> 16) % 64, wire.size() - pos);
        std::span<const char> in{wire.data() + pos, n};
        pos += n;
        for (;;) {
            decode_event ev;
            if (batch) {
                ev = dec.for_each_frame(in, [&](std::string_view payload) {
                    if (mode != decode_mode::whole) mismatch("frame in streaming mode");
                    out.frames.emplace_back(payload);
                });
                if (ev == decode_event::frame) mismatch("for_each_frame returned a frame");
            } else {
                ev = dec.next(in);
            }
            if (ev == decode_event::need_more) break;
            if (ev == decode_event::error) {
                if (dec.error_message().empty()) mismatch("error without a message");
                out.error = dec.error();
                out.last_header = dec.header_bytes();
                out.last_length = dec.length();
                return out;
            }
            switch (ev) {
                case decode_event::frame:
                    if (mode != decode_mode::whole) mismatch("frame event in streaming mode");
                    out.frames.emplace_back(dec.payload());
                    break;
                case decode_event::begin:
                    if (in_frame) mismatch("begin inside a frame");
                    in_frame = true;
                    current.clear();
                    break;
                case decode_event::data:
                    if (!in_frame || dec.payload().empty()) mismatch("bad data event");
                    current.append(dec.payload());
                    break;
                case decode_event::end:
                    if (!in_frame) mismatch("end outside a frame");
                    in_frame = false;
                    out.frames.push_back(current);
                    break;
                default: break;
            }
        }
        if (!in.empty()) mismatch("need_more with input left");
    } while (pos < wire.size());
    // Drain a pending end in streaming mode, then check end of stream.
    std::span<const char> none{};
    if (mode == decode_mode::streaming && in_frame && dec.next(none) == decode_event::end) {
        out.frames.push_back(current);
        in_frame = false;
    }
    out.error = dec.finish();
    out.last_header = dec.header_bytes();
    out.last_length = dec.length();
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    codec_options opts;
    opts.header_size = 1 + data[0] % 20;
    opts.unit = (data[1] & 1) ? length_unit::code_points : length_unit::bytes;
    static constexpr std::uint64_t maxima[] = {0, 1, 5, 16, 100, 1000, 1'000'000'000, UINT64_MAX};
    opts.max_message = maxima[(data[1] >> 1) & 7];
    std::uint32_t seed = data[2] | (data[3] << 8);
    std::string_view wire(reinterpret_cast<const char*>(data + 4), size - 4);

    auto expected = reference_decode(wire, opts);
    for (auto mode : {decode_mode::whole, decode_mode::streaming}) {
        for (std::uint32_t s : {seed, seed ^ 0x5bd1u}) {
            const auto by_next = run(wire, opts, mode, s, false);
            const auto batched = run(wire, opts, mode, s, true);
            for (const auto* got : {&by_next, &batched}) {
                if (got->error != expected.error) mismatch("error differs");
                if (got->frames != expected.frames) mismatch("frames differ");
            }
            if (batched.last_header != by_next.last_header ||
                batched.last_length != by_next.last_length) {
                mismatch("header_bytes()/length() differ after for_each_frame");
            }
        }
    }
    // Whatever decodes must re-encode to the same frames.
    for (const auto& f : expected.frames) {
        std::string again;
        if (!append_frame(again, f, opts)) {
            auto back = reference_decode(again, opts);
            if (back.error || back.frames.size() != 1 || back.frames[0] != f) mismatch("re-encode");
        }
    }
    return 0;
}
