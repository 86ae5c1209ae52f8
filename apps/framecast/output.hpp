// What a received message looks like on standard output (connect -o, serve --print -o):
// lines, raw payloads, the frames as received, or JSON objects; written in big pieces.
#pragma once

#include <cerrno>
#include <chrono>
#include <ctime>
#include <string>
#include <string_view>

#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>

#include "framecast/codec.hpp"
#include "framecast/io/asio.hpp"
#include "framecast/io/client.hpp"
#include "framecast/io/json.hpp"

namespace framecast::app {

enum class output_format { lines, raw, framed, json };

inline void append_base64(std::string& out, std::string_view s) {
    static constexpr char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    std::size_t i = 0;
    for (; i + 3 <= s.size(); i += 3) {
        unsigned v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
        out += abc[v >> 18];
        out += abc[(v >> 12) & 63];
        out += abc[(v >> 6) & 63];
        out += abc[v & 63];
    }
    if (std::size_t left = s.size() - i; left > 0) {
        unsigned v = p[i] << 16;
        if (left == 2) v |= p[i + 1] << 8;
        out += abc[v >> 18];
        out += abc[(v >> 12) & 63];
        out += left == 2 ? abc[(v >> 6) & 63] : '=';
        out += '=';
    }
}

// Writes all of `data` to a file descriptor, waiting out EAGAIN on a non-blocking one.
inline bool write_all(int fd, const char* data, std::size_t size, error_code& ec) {
    while (size > 0) {
        ssize_t n = ::write(fd, data, size);
        if (n >= 0) {
            data += n;
            size -= static_cast<std::size_t>(n);
            continue;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            pollfd pfd{fd, POLLOUT, 0};
            ::poll(&pfd, 1, -1);
            continue;
        }
        ec.assign(errno, boost::system::system_category());
        return false;
    }
    return true;
}

// Formats what arrives into one output buffer and writes it to stdout in big pieces: when the
// buffer is full, and when the socket goes quiet (so a slow stream still shows up at once).
class output_sink final : public io::frame_handler {
public:
    output_sink(output_format format, std::uint64_t count, bool flush_each)
        : format_(format), count_(count), flush_each_(flush_each) {
        out_.reserve(flush_at + 64 * 1024);
    }

    std::uint64_t messages() const noexcept { return seq_; }
    const error_code& output_error() const noexcept { return output_error_; }
    bool count_reached() const noexcept { return count_ != 0 && seq_ >= count_; }

    void on_read(std::size_t) override { stamp_valid_ = false; }

    // Some payload held a byte >= 0x80 (for the --length-unit hint after a bad header).
    bool saw_non_ascii() const noexcept { return non_ascii_; }

    bool on_frame(std::string_view payload) override {
        if (!non_ascii_) non_ascii_ = has_non_ascii(payload);
        // Whole messages come here in -o lines and json, and from a resuming reader in every
        // format (raw and framed otherwise stream through on_begin/on_data/on_end).
        if (format_ == output_format::json) {
            append_json(payload);
        } else if (format_ == output_format::lines || format_ == output_format::raw) {
            // A big message goes out from where it was read, as on_data's big pieces do, not
            // copied into the buffer first. With has_non_ascii, connect's user CPU for 2 GiB of
            // 1 MiB lines went from 0.53-0.85 s to 0.08-0.11 s (docs/bench.md, "The relay at
            // 1 MiB").
            if (payload.size() >= flush_at) {
                flush();
                write(payload);
                if (format_ == output_format::lines) write("\n");  // the line ends with it
            } else {
                out_.append(payload);
                if (format_ == output_format::lines) out_ += '\n';
            }
        } else if (append_frame(out_, payload, codec_)) {
            out_.append(payload);  // not reached: it came in a frame of this codec, so fits one
        }
        return message_done();
    }

    bool on_begin(std::uint64_t, std::string_view header) override {
        if (format_ == output_format::framed) out_.append(header);
        return true;
    }

    bool on_data(std::string_view piece) override {
        if (piece.size() >= flush_at) {  // a big piece of a big message: no copy
            flush();
            write(piece);
        } else {
            out_.append(piece);
            if (out_.size() >= flush_at) flush();
        }
        return !output_error_;
    }

    bool on_end() override { return message_done(); }

    void on_idle() override { flush(); }

    // -o framed, whole messages: the codec their frames are written with.
    void frame_with(const codec_options& codec) { codec_ = codec; }
    // Resume: the offset of the next message (0: none), shown in -o json as "offset".
    void set_offset(std::uint64_t offset) noexcept { offset_ = offset; }
    // Resume: an event (a JSON object) in the -o json output, in order with the messages.
    void event(std::string_view json_object) {
        if (format_ != output_format::json) return;
        out_.append(json_object);
        out_ += '\n';
        flush();
    }

    void flush() {
        if (!out_.empty()) write(out_);
        out_.clear();
    }

private:
    static constexpr std::size_t flush_at = 256 * 1024;

    bool message_done() {
        ++seq_;
        if (flush_each_ || out_.size() >= flush_at) flush();
        return !output_error_ && !count_reached();
    }

    void write(std::string_view bytes) {
        if (output_error_) return;
        write_all(STDOUT_FILENO, bytes.data(), bytes.size(), output_error_);
    }

    void append_json(std::string_view payload) {
        if (!stamp_valid_) {
            auto now = std::chrono::system_clock::now();
            auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch())
                          .count();
            std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
            std::tm tm{};
            gmtime_r(&secs, &tm);
            char text[40];
            std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
            stamp_ = fmt::format("{}.{:06}Z", text, us % 1'000'000);
            stamp_valid_ = true;
        }
        fmt::format_to(std::back_inserter(out_), R"({{"seq":{},"length":{},"time":"{}",)", seq_ + 1,
                       payload.size(), stamp_);
        if (offset_ != 0) fmt::format_to(std::back_inserter(out_), R"("offset":{},)", offset_);
        if (count_code_points(payload)) {
            out_ += R"("text":")";
            io::append_json_string(out_, payload);
        } else {
            out_ += R"("base64":")";
            append_base64(out_, payload);
        }
        out_ += "\"}\n";
    }

    output_format format_;
    std::uint64_t count_;
    bool flush_each_;
    std::uint64_t seq_ = 0;
    std::uint64_t offset_ = 0;
    codec_options codec_;
    std::string out_;
    std::string stamp_;
    bool stamp_valid_ = false;
    bool non_ascii_ = false;
    error_code output_error_;
};


// The formats' names on the command line, and what each means for --help.
inline output_format output_format_of(const std::string& name) {
    return name == "raw"      ? output_format::raw
           : name == "framed" ? output_format::framed
           : name == "json"   ? output_format::json
                              : output_format::lines;
}

}  // namespace framecast::app
