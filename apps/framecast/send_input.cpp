#include "send_input.hpp"

#include <cerrno>
#include <chrono>
#include <span>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "framecast/error.hpp"
#include "framecast/io/line_splitter.hpp"

namespace framecast::app {
namespace {

using clock = std::chrono::steady_clock;

// Spaces messages 1/rate apart (no burst: "100/s" is one message every 10 ms).
class pacer {
public:
    explicit pacer(double rate) : rate_(rate), next_(clock::now()) {}
    void wait() {
        if (rate_ <= 0) return;
        std::this_thread::sleep_until(next_);
        next_ = std::max(next_, clock::now() - period()) + period();
    }

private:
    clock::duration period() const {
        return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(1.0 / rate_));
    }
    double rate_;
    clock::time_point next_;
};

class feeder {
public:
    feeder(const send_input& in, io::send_queue& queue, std::string& what)
        : in_(in), queue_(queue), what_(what), pace_(in.rate) {}

    std::error_code run() {
        for (std::size_t i = 0; i < in_.messages.size(); ++i) {
            if (auto ec = push(in_.messages[i], "message " + std::to_string(i + 1))) return ec;
        }
        for (const auto& f : in_.files) {
            if (auto ec = push_file(f)) return ec;
        }
        if (!in_.messages.empty() || !in_.files.empty()) return {};
        if (in_.format == "raw") return push_raw();
        if (in_.format == "framed") return push_framed();
        return push_lines();
    }

private:
    std::error_code fail(std::error_code ec, std::string what) {
        what_ = std::move(what);
        return ec;
    }

    std::error_code push(std::string_view m, const std::string& label) {
        const auto max = queue_.options().max_message;
        if (m.size() > max) {
            return fail(errc::message_too_large, "cannot send " + label + ": it is " +
                                                     std::to_string(m.size()) +
                                                     " bytes, more than --max-message " +
                                                     std::to_string(max));
        }
        pace_.wait();
        queue_.wait_for_room();
        if (auto ec = queue_.push(m)) return fail(ec, "cannot send " + label + ": " + ec.message());
        return {};
    }

    // Reads all of `fd` up to max_message + 1 bytes (one more tells "too large").
    std::error_code read_whole(int fd, std::string& out, const std::string& label) {
        const auto limit = queue_.options().max_message + 1;
        char buf[64 * 1024];
        while (out.size() < limit) {
            ssize_t n = ::read(fd, buf, std::min<std::uint64_t>(sizeof buf, limit - out.size()));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                std::error_code ec(errno, std::system_category());
                return fail(ec, "cannot read " + label + ": " + ec.message());
            }
            if (n == 0) break;
            out.append(buf, static_cast<std::size_t>(n));
        }
        return {};
    }

    std::error_code push_file(const std::string& path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            std::error_code ec(errno, std::system_category());
            return fail(ec, "cannot read " + path + ": " + ec.message());
        }
        std::string content;
        auto ec = read_whole(fd, content, path);
        ::close(fd);
        return ec ? ec : push(content, path);
    }

    std::error_code push_raw() {
        std::string all;
        if (auto ec = read_whole(STDIN_FILENO, all, "standard input")) return ec;
        return push(all, "standard input (--input raw)");
    }

    // Frames as `connect -o framed` writes them, checked by the codec, sent one by one.
    std::error_code push_framed() {
        decoder dec(queue_.options(), decode_mode::whole);
        char buf[64 * 1024];
        std::uint64_t n_frames = 0;
        for (;;) {
            ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                std::error_code ec(errno, std::system_category());
                return fail(ec, "cannot read standard input: " + ec.message());
            }
            if (n == 0) break;
            std::span<const char> in(buf, static_cast<std::size_t>(n));
            for (;;) {
                auto ev = dec.next(in);
                if (ev == decode_event::need_more) break;
                if (ev == decode_event::error) {
                    return fail(dec.error(), "standard input (--input framed), frame " +
                                                 std::to_string(n_frames + 1) + ": " +
                                                 dec.error_message());
                }
                ++n_frames;
                if (auto ec = push(dec.payload(), "frame " + std::to_string(n_frames))) return ec;
            }
        }
        if (auto ec = dec.finish()) {
            return fail(ec, "standard input (--input framed): " + dec.error_message());
        }
        return {};
    }

    std::error_code push_lines() {
        if (in_.rate <= 0) {
            // The fast path: lines framed in batches, many per write.
            std::string what;
            auto ec = io::queue_lines(STDIN_FILENO, queue_, what);
            if (ec) return fail(ec, what);
            return {};
        }
        io::line_splitter lines(queue_.options().max_message);
        char buf[64 * 1024];
        auto take = [&](auto&& next_event) -> std::error_code {
            for (;;) {
                switch (next_event()) {
                    case io::line_splitter::event::need_more:
                        return {};
                    case io::line_splitter::event::too_long:
                        return fail(errc::message_too_large, lines.too_long_message());
                    case io::line_splitter::event::line:
                        if (auto ec = push(lines.line(),
                                           "line " + std::to_string(lines.line_number()))) {
                            return ec;
                        }
                }
            }
        };
        for (;;) {
            ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            std::string_view in(buf, static_cast<std::size_t>(n));
            if (auto ec = take([&] { return lines.next(in); })) return ec;
        }
        return take([&] { return lines.finish(); });
    }

    const send_input& in_;
    io::send_queue& queue_;
    std::string& what_;
    pacer pace_;
};

}  // namespace

double parse_rate(const std::string& text) {
    std::string number = text;
    if (auto slash = number.find('/'); slash != std::string::npos) {
        if (number.substr(slash) != "/s") {
            throw CLI::ValidationError("--rate", "'" + text + "': give messages per second, e.g. 100/s");
        }
        number.resize(slash);
    }
    std::size_t used = 0;
    double rate = 0;
    try {
        rate = std::stod(number, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != number.size() || !(rate >= 0) || rate > 1e9) {
        throw CLI::ValidationError("--rate", "'" + text + "' is not a rate such as 100/s");
    }
    return rate;
}

std::error_code feed(const send_input& in, io::send_queue& queue, std::string& what) {
    auto ec = feeder(in, queue, what).run();
    queue.close();
    return ec;
}

}  // namespace framecast::app
