// Client-side building blocks over Asio: connect with a deadline, a framed reader loop over the
// codec's decoder, and a frame writer that batches many small frames into one write.
// `framecast connect`, `framecast send`, `framecast chat` and the benchmarks are built on these.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "framecast/io/asio.hpp"
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "framecast/codec.hpp"
#include "framecast/io/client_stream.hpp"

namespace framecast::io {

using tcp = asio::ip::tcp;
using duration = std::chrono::steady_clock::duration;

// ---------------------------------------------------------------------------------------------
// Connecting

// Resolves `host` and connects `socket` to the first of its addresses that accepts, all within
// `timeout`. On failure returns the error (asio::error::timed_out when the deadline passed) and
// sets `what` to a sentence naming the step and the address ("cannot resolve 'nohost': Host not
// found", "cannot connect to 127.0.0.1:9: Connection refused").
asio::awaitable<error_code> async_connect(tcp::socket& socket, std::string host,
                                               std::uint16_t port, duration timeout,
                                               std::string& what);

// ---------------------------------------------------------------------------------------------
// Reading

// Receives what read_frames() decodes. Every callback runs on the socket's executor; one that
// returns false stops the reader (e.g. after as many messages as wanted).
class frame_handler {
public:
    virtual ~frame_handler() = default;
    // Bytes arrived from the socket, before they are decoded (e.g. to stamp a receive time).
    virtual void on_read(std::size_t /*bytes*/) {}
    // decode_mode::whole: one whole payload, a view valid only during the call.
    virtual bool on_frame(std::string_view /*payload*/) { return true; }
    // decode_mode::streaming: a frame of `length` header units begins; `header` holds its header
    // bytes exactly as received.
    virtual bool on_begin(std::uint64_t /*length*/, std::string_view /*header*/) { return true; }
    // decode_mode::streaming: the next piece of the current payload.
    virtual bool on_data(std::string_view /*piece*/) { return true; }
    // decode_mode::streaming: the current frame is complete.
    virtual bool on_end() { return true; }
    // The socket has nothing more right now and the reader is about to wait: the moment to
    // flush buffered output.
    virtual void on_idle() {}
};

// How read_frames() ended.
struct read_result {
    // {} : the peer closed at a frame boundary, or the handler stopped the reader (`stopped`).
    // framecast::errc : the decoder's error (truncated_frame when the peer closed mid-frame).
    // asio::error::timed_out : nothing arrived for `idle_timeout`.
    // anything else : the socket's error (e.g. connection_reset).
    error_code ec;
    std::string message;  // a sentence for the user when ec is set
    bool stopped = false;
    std::uint64_t bytes = 0;  // bytes received on this connection
};

struct read_options {
    // Give up when nothing arrives for this long; zero means wait forever.
    duration idle_timeout{};
};

// Reads from `stream` into `buffer` (its size is the read size: 16 bytes works, 256 KiB is
// fast), feeds every byte to `dec` and hands the events to `handler`, until the peer closes, an
// error, the idle timeout, or the handler says stop. Frames that arrive whole are passed as views
// into `buffer`: no copy, no allocation per message. Puts a TCP socket in non-blocking mode.
asio::awaitable<read_result> read_frames(client_stream& stream, decoder& dec,
                                         std::span<char> buffer, frame_handler& handler,
                                         read_options opts = {});

// ---------------------------------------------------------------------------------------------
// Writing

// Frames waiting to be written: thread-safe, so a thread blocked on stdin can feed a writer
// running on an io_context. Frames are appended, encoded, into one buffer, which the writer
// takes whole for its next write: many small frames go out in one system call.
class send_queue {
public:
    explicit send_queue(codec_options opts = {}, std::size_t max_pending = 4 << 20);

    // Encodes and queues one frame. Fails (queues nothing) when the payload cannot be framed
    // under the options (invalid UTF-8 in code-point mode, too long for the header).
    error_code push(std::string_view payload);
    // Queues bytes that are already frames.
    void push_encoded(std::string_view frames);
    // Blocks the calling thread while more than max_pending bytes wait. Never call it on the
    // writer's own thread.
    void wait_for_room();
    // Nothing more will be queued: the writer shuts down its sending side once all is written.
    void close();

    const codec_options& options() const noexcept { return opts_; }

    // For a writer of its own (framecast send --reconnect keeps what it took until the server
    // acknowledges it): appends everything queued to `out`. When nothing is queued: `closed`
    // once close() was called, else `empty`, and `wake` will be called once (on a pushing
    // thread, under the queue's lock: post, do not block) when something arrives.
    enum class take_result { data, empty, closed };
    take_result take(std::string& out, std::function<void()> wake);
    // The `wake` of the last take() will not be called (its owner is going away).
    void clear_wake();

private:
    friend class frame_writer;
    void wake_locked();

    codec_options opts_;
    std::size_t max_pending_;
    std::mutex mutex_;
    std::condition_variable room_;
    std::string pending_;
    bool closed_ = false;
    // Set by the writer while it sleeps: wakes it (posted onto its executor).
    std::function<void()> wake_;
};

// Writes what a send_queue holds to a socket: at most one write in flight, and everything queued
// meanwhile goes out together in the next one.
class frame_writer {
public:
    frame_writer(asio::any_io_executor ex, std::shared_ptr<send_queue> queue);
    ~frame_writer();
    frame_writer(const frame_writer&) = delete;
    frame_writer& operator=(const frame_writer&) = delete;

    // Writes until the queue is closed and drained (then, with `half_close`, shuts down the
    // sending side of `stream`; returns {}), or a write fails (returns its error). Cancellable
    // (e.g. by awaitable operator ||): returns operation_aborted. Frames queued while no run()
    // is active wait for the next one; the bytes of a write cut short by an error are lost.
    asio::awaitable<error_code> run(client_stream& stream, bool half_close = true);

    const std::shared_ptr<send_queue>& queue() const noexcept { return queue_; }
    std::uint64_t bytes_written() const noexcept { return bytes_written_; }

private:
    asio::any_io_executor ex_;
    std::shared_ptr<send_queue> queue_;
    asio::steady_timer wake_timer_;
    std::shared_ptr<bool> alive_;
    std::string writing_;
    std::uint64_t bytes_written_ = 0;
};

// Reads `fd` (e.g. 0, stdin) until end of input and queues each line as one frame (split by
// line_splitter: "\n" or "\r\n" ends a line, a last line without one counts), then closes the
// queue. A line longer than the largest message is an error (errc::message_too_large). Blocking: run it on a thread of its own. Stops early, closing
// the queue, when a line cannot be framed; returns that error and sets `what`. `before_each`
// (frames already encoded, e.g. a channels `PUB` command) is queued before every line's frame,
// `at_end` after the last line (only when every line was queued).
error_code queue_lines(int fd, send_queue& queue, std::string& what,
                       std::string_view before_each = {}, std::string_view at_end = {});

// Completes only when cancelled: a branch of `||` that must not end the group by finishing.
asio::awaitable<void> wait_forever();

}  // namespace framecast::io
