// An in-memory transport for unit tests: the test holds the pipe, feeds bytes (feed, feed_eof),
// reads what the session wrote (`written`), and can make the "socket" full
// (set_write_capacity) to play a slow consumer. With `hold_output` it plays TLS: a write takes
// everything offered and what the "socket" cannot take waits inside the transport
// (output_pending) until capacity is granted and a write sends it. On the io_context's thread;
// no sockets.
#pragma once

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "framecast/io/transport.hpp"
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>

namespace framecast::io {

class memory_transport final : public transport {
public:
    // What the test sees of the pipe; shared, so it outlives the session's transport.
    struct pipe {
        explicit pipe(asio::any_io_executor ex) : readable(ex), writable(ex) {}
        void feed(std::string_view bytes) {
            inbound.append(bytes);
            readable.cancel();
        }
        void feed_eof() {
            eof = true;
            readable.cancel();
        }
        void set_write_capacity(std::size_t n) {
            write_capacity = n;
            if (n > 0) writable.cancel();
        }

        std::string inbound;             // bytes the session has not read yet
        bool eof = false;                // after `inbound`, end of stream
        std::string written;             // what the session wrote
        std::size_t write_capacity = std::numeric_limits<std::size_t>::max();
        std::size_t read_chunk = std::numeric_limits<std::size_t>::max();  // most per read
        bool send_shut = false;
        bool closed = false;
        bool hold_output = false;  // take everything; keep what capacity refuses in `held`
        std::string held;          // taken, not yet in `written` (hold_output)
        bool shut_after_held = false;  // shutdown_send() came while bytes were held
        asio::steady_timer readable, writable;  // cancelled when the condition may have changed
    };

    memory_transport(std::shared_ptr<pipe> p, std::string name)
        : pipe_(std::move(p)), name_(std::move(name)) {}

    std::size_t try_read(std::span<char> buf, error_code& ec) override {
        ec = {};
        if (pipe_->closed) {
            ec = asio::error::bad_descriptor;
            return 0;
        }
        if (pipe_->inbound.empty()) {
            ec = pipe_->eof ? error_code(asio::error::eof) : error_code(asio::error::would_block);
            return 0;
        }
        std::size_t n = std::min({buf.size(), pipe_->inbound.size(), pipe_->read_chunk});
        std::memcpy(buf.data(), pipe_->inbound.data(), n);
        pipe_->inbound.erase(0, n);
        return n;
    }

    std::size_t try_write(std::span<const asio::const_buffer> bufs, error_code& ec) override {
        ec = {};
        if (pipe_->closed || pipe_->send_shut) {
            ec = asio::error::broken_pipe;
            return 0;
        }
        if (pipe_->hold_output) return hold_write(bufs, ec);
        std::size_t n = 0;
        for (const auto& b : bufs) {
            std::size_t take = std::min(b.size(), pipe_->write_capacity - n);
            pipe_->written.append(static_cast<const char*>(b.data()), take);
            n += take;
            if (take < b.size()) break;
        }
        pipe_->write_capacity -= n;
        if (n == 0) ec = asio::error::would_block;
        return n;
    }

    asio::awaitable<error_code> wait_readable() override {
        while (!pipe_->closed && pipe_->inbound.empty() && !pipe_->eof) {
            pipe_->readable.expires_at(asio::steady_timer::time_point::max());
            co_await pipe_->readable.async_wait(use_nothrow);
        }
        co_return pipe_->closed ? error_code(asio::error::operation_aborted) : error_code{};
    }

    asio::awaitable<error_code> wait_writable() override {
        while (!pipe_->closed && pipe_->write_capacity == 0) {
            pipe_->writable.expires_at(asio::steady_timer::time_point::max());
            co_await pipe_->writable.async_wait(use_nothrow);
        }
        co_return pipe_->closed ? error_code(asio::error::operation_aborted) : error_code{};
    }

    bool output_pending() const noexcept override { return !pipe_->held.empty(); }

    void shutdown_send() noexcept override {
        if (pipe_->held.empty()) pipe_->send_shut = true;
        else pipe_->shut_after_held = true;
    }
    void close() noexcept override {
        pipe_->closed = true;
        pipe_->readable.cancel();
        pipe_->writable.cancel();
    }
    std::string peer_name() const override { return name_; }
    asio::any_io_executor get_executor() override { return pipe_->readable.get_executor(); }

private:
    // hold_output: send what is held (as capacity allows), then take all of `bufs` behind it.
    std::size_t hold_write(std::span<const asio::const_buffer> bufs, error_code& ec) {
        send_held();
        if (!pipe_->held.empty()) {
            ec = asio::error::would_block;
            return 0;
        }
        std::size_t n = 0;
        for (const auto& b : bufs) {
            pipe_->held.append(static_cast<const char*>(b.data()), b.size());
            n += b.size();
        }
        send_held();
        if (n == 0 && !pipe_->held.empty()) ec = asio::error::would_block;
        return n;
    }
    void send_held() {
        const std::size_t k = std::min(pipe_->held.size(), pipe_->write_capacity);
        pipe_->written.append(pipe_->held, 0, k);
        pipe_->held.erase(0, k);
        pipe_->write_capacity -= k;
        if (pipe_->held.empty() && pipe_->shut_after_held) pipe_->send_shut = true;
    }

    std::shared_ptr<pipe> pipe_;
    std::string name_;
};

}  // namespace framecast::io
