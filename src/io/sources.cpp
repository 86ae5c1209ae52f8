#include "framecast/io/sources.hpp"

#include <poll.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <optional>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "framecast/io/line_splitter.hpp"

namespace framecast::io {

std::string python_float_repr(double value) {
    if (std::isnan(value)) return "nan";
    if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
    // Shortest round-trip digits, in scientific form: "d.ddde[+-]XX".
    std::array<char, 64> buf{};
    auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value,
                                   std::chars_format::scientific);
    std::string_view sci(buf.data(), static_cast<std::size_t>(end - buf.data()));
    std::string out;
    if (sci.front() == '-') {
        out = "-";
        sci.remove_prefix(1);
    }
    auto e = sci.find('e');
    std::string digits;
    for (char c : sci.substr(0, e)) {
        if (c != '.') digits += c;
    }
    int exp = std::atoi(std::string(sci.substr(e + 1)).c_str());
    if (exp >= -4 && exp < 16) {
        if (exp >= 0) {
            auto int_len = static_cast<std::size_t>(exp) + 1;
            if (digits.size() <= int_len) {
                out += digits + std::string(int_len - digits.size(), '0') + ".0";
            } else {
                out += digits.substr(0, int_len) + "." + digits.substr(int_len);
            }
        } else {
            out += "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
        }
        return out;
    }
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += exp < 0 ? "e-" : "e+";
    auto mag = std::to_string(std::abs(exp));
    if (mag.size() < 2) mag.insert(0, "0");
    return out + mag;
}

std::string time_message(std::chrono::system_clock::time_point now) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch());
    return "The time is " + python_float_repr(static_cast<double>(us.count()) / 1e6);
}

// ---------------------------------------------------------------------------------------------

time_source::time_source(asio::io_context& io, std::chrono::milliseconds interval,
                         std::function<void(std::string_view)> emit)
    : timer_(io), interval_(interval), emit_(std::move(emit)) {}

void time_source::start() {
    next_ = std::chrono::steady_clock::now();
    arm();
}

void time_source::stop() {
    stopped_ = true;
    timer_.cancel();
}

void time_source::arm() {
    // Fixed-rate ticks (no drift from the time spent broadcasting); skip ticks missed.
    auto now = std::chrono::steady_clock::now();
    next_ += interval_;
    if (next_ < now) next_ = now + interval_;
    timer_.expires_at(next_);
    timer_.async_wait([this](error_code ec) {
        if (ec || stopped_) return;
        emit_(time_message(std::chrono::system_clock::now()));
        arm();
    });
}

// ---------------------------------------------------------------------------------------------

namespace {

// Messages read from stdin, encoded on the reader thread (not the io thread) into units of
// whole frames, each at most unit_bytes (or one frame), handed to the io thread together: an
// allocation and a broadcast per unit, not per message.
struct message_batch {
    std::vector<relay_unit> units;
    std::optional<relay_unit_builder> open;  // the unit being filled
    std::size_t bytes = 0;

    void add(std::string_view m, const codec_options& codec, std::size_t unit_bytes) {
        if (open && !open->empty() && open->would_exceed(m.size(), unit_bytes)) seal();
        if (!open) open.emplace(codec);
        const std::size_t before = open->size();
        // The reader checked the length against max_message, which the header can announce;
        // with lengths in code points the message must also be valid UTF-8.
        if (auto ec = open->append(m)) {
            spdlog::error("standard input: cannot send a {}-byte message: {}; skipped", m.size(),
                          ec.message());
        }
        bytes += open->size() - before;
    }
    void seal() {
        if (open) {
            if (auto unit = open->take()) units.push_back(std::move(unit));
        }
        open.reset();
    }
    bool empty() const noexcept { return units.empty() && (!open || open->empty()); }
};

// Stdin is read until it has nothing more right now or a batch holds this much: a batch is
// one hand-off to the io thread, and the server's writes can only be as large as its batches.
constexpr std::size_t batch_bytes = 256 * 1024;

}  // namespace

struct stdin_source::state {
    asio::io_context& io;
    int fd;
    format fmt;
    codec_options codec;
    std::size_t unit_bytes;
    std::function<void(const relay_unit&)> on_frames;
    std::function<void(error_code, const std::string&)> on_end;
    pacing pace;

    // The hand-off, guarded by `mutex`: batches read and not yet taken by the io thread (at
    // most max_ready), then how the input ended.
    static constexpr std::size_t max_ready = 2;
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<message_batch> ready;
    std::optional<std::pair<error_code, std::string>> end;
    bool stopped = false;
    int wake[2] = {-1, -1};  // a pipe that interrupts the thread's poll()
    std::thread thread;

    // The io thread's side: the batch being handed out, unit by unit.
    message_batch current;
    std::size_t next_unit = 0;  // index into current.units
    bool waiting = false;          // paused by pace.busy(); pace.when_ready() resumes it

    state(asio::io_context& io, int fd, format fmt, codec_options codec, std::size_t unit_bytes,
          std::function<void(const relay_unit&)> on_frames,
          std::function<void(error_code, const std::string&)> on_end)
        : io(io), fd(fd), fmt(fmt), codec(codec), unit_bytes(unit_bytes),
          on_frames(std::move(on_frames)), on_end(std::move(on_end)) {}

    // Runs on the reader thread; waits while max_ready batches are waiting. False when stopped.
    bool post_batch(const std::shared_ptr<state>& self, message_batch batch) {
        {
            std::unique_lock lock(mutex);
            cv.wait(lock, [&] { return ready.size() < max_ready || stopped; });
            if (stopped) return false;
            batch.seal();
            ready.push_back(std::move(batch));
        }
        asio::post(io, [self] { self->hand_out(self); });
        return true;
    }

    void post_end(const std::shared_ptr<state>& self, error_code ec, std::string message) {
        {
            std::lock_guard g(mutex);
            end.emplace(ec, std::move(message));
        }
        asio::post(io, [self] { self->hand_out(self); });
    }

    // Runs on the io thread: hands out messages in order until there are none or the consumers
    // are busy, then (all batches handed out) the end of input.
    void hand_out(const std::shared_ptr<state>& self) {
        if (waiting) return;  // the when_ready() continuation carries on
        for (;;) {
            if (next_unit == current.units.size()) {
                std::unique_lock lock(mutex);
                if (stopped) return;
                if (ready.empty()) {
                    if (!end) return;
                    auto [ec, message] = std::move(*end);
                    end.reset();
                    lock.unlock();
                    on_end(ec, message);
                    return;
                }
                current = std::move(ready.front());
                ready.pop_front();
                next_unit = 0;
                lock.unlock();
                cv.notify_all();
            }
            while (next_unit < current.units.size()) {
                if (pace.busy && pace.busy()) {
                    waiting = true;
                    pace.when_ready([self] {
                        self->waiting = false;
                        self->hand_out(self);
                    });
                    return;
                }
                on_frames(current.units[next_unit]);
                current.units[next_unit++] = {};
            }
            {
                std::lock_guard g(mutex);
                if (stopped) return;
            }
        }
    }

    // The reader thread: reads stdin until its end, a bad input, or stop(); parses what it
    // reads into batches of encoded units and hands each batch to the io thread when it is big
    // enough or when stdin has nothing more right now.
    void run(const std::shared_ptr<state>& self) {
        std::vector<char> buf(64 * 1024);
        input_parser parser(codec);
        message_batch batch;
        for (;;) {
            const auto waited = wait_for_input(self, !batch.empty());
            if (waited == wait_result::done) return;
            if (waited == wait_result::idle) {
                if (!hand_over(self, batch)) return;
                continue;
            }
            // The rest of a large frame is read straight into the decoder: one copy less per
            // byte than reading into buf and gathering it from there.
            const auto room = fmt == format::framed ? parser.frames.payload_space() : std::span<char>{};
            const bool in_place = room.size() >= buf.size();
            const ssize_t n = in_place ? ::read(fd, room.data(), room.size())
                                       : ::read(fd, buf.data(), buf.size());
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                post_end(self, error_code(errno, boost::system::generic_category()),
                         "reading standard input");
                return;
            }
            if (n == 0) return end_of_input(self, parser, batch);
            if (in_place) {
                if (parser.frames.commit(static_cast<std::size_t>(n)) == decode_event::frame) {
                    batch.add(parser.frames.payload(), codec, unit_bytes);
                }
            } else if (!parse(self, parser, {buf.data(), static_cast<std::size_t>(n)}, batch)) {
                return;
            }
            if (batch.bytes >= batch_bytes && !hand_over(self, batch)) return;
        }
    }

private:
    // What the reader turns bytes into messages with: lines, or frames.
    struct input_parser {
        line_splitter lines;
        decoder frames;
        explicit input_parser(const codec_options& codec)
            : lines(codec.max_message), frames(codec, decode_mode::whole) {
            // One reader of large frames: keeping its buffer (up to 16 MiB) saves an allocation
            // and the page faults of fresh memory per frame.
            frames.retain_capacity(std::min<std::size_t>(codec.max_message, 16 << 20));
        }
    };

    enum class wait_result { readable, idle, done };

    // Waits until stdin has bytes; with a batch started, only looks whether it has some right
    // now (idle: hand the batch over before waiting). done: stop() was called, or poll failed.
    wait_result wait_for_input(const std::shared_ptr<state>& self, bool have_batch) {
        for (;;) {
            pollfd fds[2] = {{fd, POLLIN, 0}, {wake[0], POLLIN, 0}};
            const int n = ::poll(fds, 2, have_batch ? 0 : -1);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                post_end(self, error_code(errno, boost::system::generic_category()),
                         "poll failed");
                return wait_result::done;
            }
            if (fds[1].revents != 0) return wait_result::done;
            return n == 0 ? wait_result::idle : wait_result::readable;
        }
    }

    // Hands the batch to the io thread and starts a new one. False when stopped.
    bool hand_over(const std::shared_ptr<state>& self, message_batch& batch) {
        const bool handed = post_batch(self, std::move(batch));
        batch = {};
        return handed;
    }

    // Bad input: what was read before it still goes out, then the input ends with the error.
    void fail(const std::shared_ptr<state>& self, message_batch& batch, error_code ec,
              std::string message) {
        post_batch(self, std::move(batch));
        post_end(self, ec, "standard input: " + message);
    }

    // Adds the messages in `in` to the batch. False (the input ended with an error) on bad input.
    bool parse(const std::shared_ptr<state>& self, input_parser& parser, std::string_view in,
               message_batch& batch) {
        return fmt == format::lines ? parse_lines(self, parser.lines, in, batch)
                                    : parse_frames(self, parser.frames, in, batch);
    }

    bool parse_lines(const std::shared_ptr<state>& self, line_splitter& lines,
                     std::string_view in, message_batch& batch) {
        for (;;) {
            switch (lines.next(in)) {
                case line_splitter::event::line:
                    batch.add(lines.line(), codec, unit_bytes);
                    break;
                case line_splitter::event::need_more:
                    return true;
                case line_splitter::event::too_long:
                    fail(self, batch, make_error_code(errc::message_too_large),
                         lines.too_long_message());
                    return false;
            }
        }
    }

    bool parse_frames(const std::shared_ptr<state>& self, decoder& frames, std::string_view in,
                      message_batch& batch) {
        std::span<const char> span(in.data(), in.size());
        for (;;) {
            switch (frames.next(span)) {
                case decode_event::need_more:
                    return true;
                case decode_event::error:
                    fail(self, batch, frames.error(), frames.error_message());
                    return false;
                default:  // whole mode: a frame
                    batch.add(frames.payload(), codec, unit_bytes);
            }
        }
    }

    // Stdin ended: the last line without a newline, what is batched, then the end itself (with
    // the decoder's error when it ended inside a frame).
    void end_of_input(const std::shared_ptr<state>& self, input_parser& parser,
                      message_batch& batch) {
        if (fmt == format::lines) {
            const auto last = parser.lines.finish();
            if (last == line_splitter::event::too_long) {
                return fail(self, batch, make_error_code(errc::message_too_large),
                            parser.lines.too_long_message());
            }
            if (last == line_splitter::event::line) batch.add(parser.lines.line(), codec, unit_bytes);
        }
        if (!batch.empty() && !post_batch(self, std::move(batch))) return;
        if (fmt == format::framed && parser.frames.finish()) {
            return post_end(self, parser.frames.error(),
                            "standard input: " + parser.frames.error_message());
        }
        post_end(self, {}, {});
    }
};

stdin_source::stdin_source(asio::io_context& io, int fd, format fmt, codec_options codec,
                           std::size_t unit_bytes,
                           std::function<void(const relay_unit&)> on_frames,
                           std::function<void(error_code, const std::string&)> on_end)
    : state_(std::make_shared<state>(io, fd, fmt, codec, unit_bytes, std::move(on_frames),
                                     std::move(on_end))) {}

stdin_source::~stdin_source() { stop(); }

void stdin_source::set_pacing(pacing p) { state_->pace = std::move(p); }

void stdin_source::start() {
    if (::pipe(state_->wake) != 0) {
        throw std::system_error(errno, std::generic_category(), "pipe");
    }
    state_->thread = std::thread([s = state_] { s->run(s); });
}

void stdin_source::stop() {
    {
        std::lock_guard g(state_->mutex);
        if (state_->stopped) return;
        state_->stopped = true;
    }
    state_->cv.notify_all();
    if (state_->wake[1] >= 0) {
        char c = 0;
        [[maybe_unused]] auto r = ::write(state_->wake[1], &c, 1);
    }
    if (state_->thread.joinable()) state_->thread.join();
    for (int& fd : state_->wake) {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
}

}  // namespace framecast::io
