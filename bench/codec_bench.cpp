// Decode throughput: a stream of frames of one payload size, fed to the decoder in 64 KiB
// chunks (as reads from a socket would arrive), by next() and by for_each_frame(), beside the
// ceiling's parser (bench/peers/raw_frames.hpp, which finds frames and checks nothing) and a
// plain memcpy of the same bytes.
// Encode cost too: ns per frame appended to a batch (append_frame, write_frame).
// The scan for bytes over 0x7f that `connect -o lines` makes of every message (has_non_ascii),
// beside the byte-at-a-time std::any_of it replaced and memchr over the same bytes.
// Run: build/default/bench/codec_bench
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>
#include <framecast/codec.hpp>

#include "peers/raw_frames.hpp"

namespace {

constexpr std::size_t chunk_size = 64 * 1024;
constexpr std::size_t stream_bytes = 8 * 1024 * 1024;

std::string make_stream(std::size_t payload, std::size_t& frames) {
    std::string wire;
    std::string p(payload, 'p');
    frames = 0;
    while (wire.size() < stream_bytes) {
        framecast::append_frame(wire, p);
        ++frames;
    }
    return wire;
}

// The stream of state.range(0)-byte frames, fed in chunks to a fresh reader every iteration:
// `make()` returns the reader, `feed(reader, chunk)` a checksum of what it found in the chunk.
template <class Make, class Feed>
void read_stream(benchmark::State& state, Make make, Feed feed) {
    std::size_t frames = 0;
    const std::string wire = make_stream(static_cast<std::size_t>(state.range(0)), frames);
    std::uint64_t checksum = 0;
    for (auto _ : state) {
        auto reader = make();
        for (std::size_t pos = 0; pos < wire.size(); pos += chunk_size)
            checksum += feed(reader, std::span<const char>{wire.data() + pos,
                                                           std::min(chunk_size, wire.size() - pos)});
        benchmark::DoNotOptimize(checksum);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * frames));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * wire.size()));
    state.counters["frames/s"] = benchmark::Counter(static_cast<double>(state.iterations() * frames),
                                                    benchmark::Counter::kIsRate);
}

void BM_decode(benchmark::State& state) {
    read_stream(state, [] { return framecast::decoder{}; },
                [](framecast::decoder& dec, std::span<const char> in) {
                    std::uint64_t bytes = 0;
                    while (dec.next(in) == framecast::decode_event::frame) bytes += dec.payload().size();
                    return bytes;
                });
}

void BM_for_each_frame(benchmark::State& state) {
    read_stream(state, [] { return framecast::decoder{}; },
                [](framecast::decoder& dec, std::span<const char> in) {
                    std::uint64_t bytes = 0;
                    dec.for_each_frame(in, [&](std::string_view p) { bytes += p.size(); });
                    return bytes;
                });
}

void BM_ceiling_parser(benchmark::State& state) {
    read_stream(state, [] { return bench::raw_parser{}; },
                [](bench::raw_parser& parser, std::span<const char> in) {
                    return parser.feed(in.data(), in.size());
                });
}

void BM_memcpy(benchmark::State& state) {
    std::size_t frames = 0;
    const std::string wire = make_stream(static_cast<std::size_t>(state.range(0)), frames);
    std::string dst(chunk_size, '\0');
    for (auto _ : state) {
        for (std::size_t pos = 0; pos < wire.size(); pos += chunk_size) {
            std::size_t n = std::min(chunk_size, wire.size() - pos);
            std::memcpy(dst.data(), wire.data() + pos, n);
            benchmark::ClobberMemory();
        }
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * wire.size()));
}

void BM_encode_header(benchmark::State& state) {
    framecast::frame_header h;
    std::uint64_t n = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(framecast::encode_header(++n & 0xffff, h));
        benchmark::DoNotOptimize(h);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// A batch of whole frames, one payload at a time, the way a sender builds its writes: into a
// std::string with append_frame (what send_queue does), or into a buffer of the caller's
// with write_frame (what bench_framecast_direct does). ns per frame.
void BM_append_frame(benchmark::State& state) {
    const std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
    std::string batch;
    batch.reserve(256 * 1024 + 1024);
    for (auto _ : state) {
        if (batch.size() >= 256 * 1024) batch.clear();
        benchmark::DoNotOptimize(framecast::append_frame(batch, payload));
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_write_frame(benchmark::State& state) {
    const std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
    std::vector<char> batch(256 * 1024 + 1024);
    std::size_t fill = 0;
    std::error_code ec;
    for (auto _ : state) {
        if (fill >= 256 * 1024) fill = 0;
        fill += framecast::write_frame(batch.data() + fill, payload, ec);
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// An ASCII payload (scanned to its end), as most are.
void BM_has_non_ascii(benchmark::State& state) {
    const std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
    for (auto _ : state) benchmark::DoNotOptimize(framecast::has_non_ascii(payload));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload.size()));
}

void BM_any_of_non_ascii(benchmark::State& state) {
    const std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
    for (auto _ : state) {
        benchmark::DoNotOptimize(std::any_of(payload.begin(), payload.end(), [](char c) {
            return (static_cast<unsigned char>(c) & 0x80) != 0;
        }));
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload.size()));
}

void BM_memchr(benchmark::State& state) {
    const std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
    for (auto _ : state) benchmark::DoNotOptimize(std::memchr(payload.data(), '\n', payload.size()));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload.size()));
}

}  // namespace

BENCHMARK(BM_has_non_ascii)->Arg(100)->Arg(65536)->Arg(1 << 20);
BENCHMARK(BM_any_of_non_ascii)->Arg(100)->Arg(65536)->Arg(1 << 20);
BENCHMARK(BM_memchr)->Arg(100)->Arg(65536)->Arg(1 << 20);
BENCHMARK(BM_append_frame)->Arg(16)->Arg(100);
BENCHMARK(BM_write_frame)->Arg(16)->Arg(100);
BENCHMARK(BM_decode)->Arg(16)->Arg(100)->Arg(1024)->Arg(65536);
BENCHMARK(BM_for_each_frame)->Arg(16)->Arg(100)->Arg(1024);
BENCHMARK(BM_ceiling_parser)->Arg(16)->Arg(100)->Arg(1024);
BENCHMARK(BM_memcpy)->Arg(16)->Arg(100)->Arg(1024)->Arg(65536);
BENCHMARK(BM_encode_header);
BENCHMARK_MAIN();
