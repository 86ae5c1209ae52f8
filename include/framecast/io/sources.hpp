// Where a server's stream comes from: the clock (the tutorial's "The time is ..."), or
// standard input, as lines or as frames.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "framecast/io/asio.hpp"
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "framecast/codec.hpp"
#include "framecast/io/frame_queue.hpp"

namespace framecast::io {

// Python's repr()/str() of a float: the shortest decimal that reads back as the same double,
// fixed notation for exponents -4..15 (always with a '.', e.g. "1552068299.0"), else
// scientific ("1e+16", "1.5e-05").
std::string python_float_repr(double value);

// "The time is <Python str(time.time())>", the time taken with microsecond resolution.
std::string time_message(std::chrono::system_clock::time_point now);

// Calls `emit` with time_message(now) every `interval`, first after one interval (like the
// tutorial's server, which sleeps before each send).
class time_source {
public:
    time_source(asio::io_context& io, std::chrono::milliseconds interval,
                std::function<void(std::string_view)> emit);
    void start();
    void stop();

private:
    void arm();
    asio::steady_timer timer_;
    std::chrono::milliseconds interval_;
    std::function<void(std::string_view)> emit_;
    std::chrono::steady_clock::time_point next_{};
    bool stopped_ = false;
};

// Reads a file descriptor (standard input) on a thread of its own — epoll refuses regular
// files, and a blocking read works for files, pipes and terminals alike — encodes the messages
// there (with `codec`) into units of whole frames, each at most `unit_bytes` (a longer message
// is a unit of its own), and hands the units in order to `on_frames` on the io_context's
// thread: the io thread does one broadcast per unit, and the encoding runs on the second core.
// At most a few batches wait in the hand-off: the thread waits for the io_context to take them
// (bounded memory).
class stdin_source {
public:
    enum class format {
        lines,   // each line (without "\n" or "\r\n") is one message
        framed,  // the input is framed already; decoded with codec options, re-broadcast
    };
    // At end of input `on_end` runs once with no error; on bad input with the error and
    // a message (e.g. the decoder's, or "line 3 is longer than ...").
    stdin_source(asio::io_context& io, int fd, format fmt, codec_options codec,
                 std::size_t unit_bytes, std::function<void(const relay_unit&)> on_frames,
                 std::function<void(error_code, const std::string&)> on_end);
    ~stdin_source();
    stdin_source(const stdin_source&) = delete;
    stdin_source& operator=(const stdin_source&) = delete;

    // Flow control toward the consumers: before each unit, `busy()` is asked; while it is
    // true the source hands out nothing more and calls `when_ready(resume)` to be resumed.
    // Reading stops too once a few chunks wait (so a pipe's writer blocks). Set before start().
    struct pacing {
        std::function<bool()> busy;
        std::function<void(std::function<void()>)> when_ready;
    };
    void set_pacing(pacing p);

    void start();
    // Stops reading (wakes the thread) and joins it.
    void stop();

    struct state;

private:
    std::shared_ptr<state> state_;
};

}  // namespace framecast::io
