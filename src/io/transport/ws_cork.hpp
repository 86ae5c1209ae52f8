// The layer under a server's Beast websocket::stream: a TCP socket whose writes are gathered.
// Beast writes each WebSocket message (and each ping, pong, close) with its own write; at
// fan-out that is one system call and one loopback segment per message per client, where a TCP
// client gets a whole batch in one. Between cork() and uncork() (ws_transport's write loop,
// around a batch) writes are appended to a buffer and complete at once; uncork() sends it in one
// write. Uncorked, every write starts a send at once (control frames are never held back).
// Bounded: past `limit` buffered bytes a write waits for the send in flight to finish.
//
// The server's data frames do not go through Beast at all (ws_transport frames them itself:
// server frames are unmasked, so framing is a 2-10 byte header): it frames into gather(), the
// same ordered buffer Beast's control frames go to, and on_progress tells the transport
// when sent bytes made room.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "framecast/io/asio.hpp"
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/teardown.hpp>

namespace framecast::io {

class corked_socket {
public:
    using next_layer_type = asio::ip::tcp::socket;
    using executor_type = next_layer_type::executor_type;
    static constexpr std::size_t limit = 256 * 1024;

    explicit corked_socket(next_layer_type s) : s_(std::make_shared<shared>(std::move(s))) {
        s_->weak = s_;
    }

    next_layer_type& next_layer() noexcept { return s_->socket; }
    const next_layer_type& next_layer() const noexcept { return s_->socket; }
    executor_type get_executor() noexcept { return s_->socket.get_executor(); }

    template <class MutableBufferSequence, class ReadToken>
    auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) {
        return asio::async_initiate<ReadToken, void(error_code, std::size_t)>(
            [s = s_](auto handler, const MutableBufferSequence& bufs) {
                if (s->replay.empty()) {
                    s->socket.async_read_some(bufs, std::move(handler));
                    return;
                }
                const std::size_t n = asio::buffer_copy(bufs, asio::buffer(s->replay));
                s->replay.erase(0, n);
                if (s->replay.empty()) std::string().swap(s->replay);
                auto ex = asio::get_associated_executor(handler, s->socket.get_executor());
                asio::post(ex, asio::append(std::move(handler), error_code{}, n));
            },
            token, buffers);
    }

    // Bytes read from the socket before this layer existed (a client's first frames, sent
    // right behind its upgrade request): reads return them first.
    void replay(std::string bytes) { s_->replay = std::move(bytes); }

    template <class ConstBufferSequence, class WriteToken>
    auto async_write_some(const ConstBufferSequence& buffers, WriteToken&& token) {
        return asio::async_initiate<WriteToken, void(error_code, std::size_t)>(
            [s = s_](auto handler, const ConstBufferSequence& bufs) {
                s->write(bufs, std::move(handler));
            },
            token, buffers);
    }

    // The buffer itself, to frame into without a copy; send() afterwards.
    std::string& gather() noexcept { return s_->buffer; }
    void send() {
        if (!s_->corked) shared::flush(s_);
    }
    // Bytes accepted and not yet taken by the kernel.
    std::size_t pending() const noexcept {
        return s_->buffer.size() + s_->in_flight.size() + s_->parked_bytes.size();
    }
    error_code error() const noexcept { return s_->error; }
    // Called after each completed send (room was made, or the socket failed).
    void on_progress(std::function<void()> fn) { s_->progress = std::move(fn); }

    void cork() noexcept { s_->corked = true; }
    // Sends what was gathered (nothing to wait for: a later write or teardown waits if needed).
    void uncork() {
        s_->corked = false;
        shared::flush(s_);
    }

    // Runs `fn(ec)` once everything buffered has been sent (or failed).
    template <class Fn>
    void after_flush(Fn fn) {
        s_->corked = false;
        if (s_->buffer.empty() && !s_->sending) {
            asio::post(s_->socket.get_executor(), [fn = std::move(fn), ec = s_->error]() mutable { fn(ec); });
            return;
        }
        s_->flushed = asio::any_completion_handler<void(error_code)>(std::move(fn));
        shared::flush(s_);
    }

private:
    using write_handler = asio::any_completion_handler<void(error_code, std::size_t)>;

    struct shared {
        explicit shared(next_layer_type s) : socket(std::move(s)) {}
        next_layer_type socket;
        std::string replay;   // read before the handshake, not yet taken (see replay())
        std::string buffer;   // gathered, not yet handed to the socket
        std::string in_flight;  // being written
        bool sending = false;
        bool corked = false;
        error_code error;
        write_handler parked;  // a write waiting for room (Beast writes one at a time)
        std::string parked_bytes;
        asio::any_completion_handler<void(error_code)> flushed;
        std::function<void()> progress;

        template <class Buffers>
        void write(const Buffers& bufs, write_handler handler) {
            // Everything runs on the socket's one-thread executor (the server's io_context).
            const auto ex = socket.get_executor();
            if (error) {
                asio::post(ex, [h = std::move(handler), ec = error]() mutable { std::move(h)(ec, 0); });
                return;
            }
            std::string bytes;
            bytes.reserve(asio::buffer_size(bufs));
            for (auto it = asio::buffer_sequence_begin(bufs); it != asio::buffer_sequence_end(bufs); ++it) {
                bytes.append(static_cast<const char*>((*it).data()), (*it).size());
            }
            if (buffer.size() + bytes.size() > limit && (sending || !buffer.empty())) {
                parked = std::move(handler);
                parked_bytes = std::move(bytes);
                flush(self());
                return;
            }
            const std::size_t n = bytes.size();
            buffer += bytes;
            if (!corked) flush(self());
            asio::post(ex, [h = std::move(handler), n]() mutable { std::move(h)(error_code{}, n); });
        }

        std::shared_ptr<shared> self() { return weak.lock(); }
        std::weak_ptr<shared> weak;  // set by corked_socket's constructor

        static void flush(const std::shared_ptr<shared>& s) {
            if (s->sending || s->error) return;
            if (s->buffer.empty()) {
                s->finish_flush();
                return;
            }
            s->sending = true;
            std::swap(s->buffer, s->in_flight);
            asio::async_write(s->socket, asio::buffer(s->in_flight),
                              [s](error_code ec, std::size_t) {
                                  s->sending = false;
                                  s->in_flight.clear();
                                  // An idle client does not keep a burst's buffer.
                                  if (s->in_flight.capacity() > limit) std::string().swap(s->in_flight);
                                  if (ec) s->error = ec;
                                  s->on_sent();
                                  if (s->progress) s->progress();
                              });
        }

        void on_sent() {
            auto me = weak.lock();
            if (parked) {
                auto h = std::move(parked);
                parked = nullptr;
                const std::size_t n = parked_bytes.size();
                if (!error) buffer += parked_bytes;
                parked_bytes.clear();
                auto ec = error;
                asio::post(socket.get_executor(),
                           [h = std::move(h), ec, n]() mutable { std::move(h)(ec, ec ? 0 : n); });
            }
            if (error) {
                buffer.clear();
                finish_flush();
                return;
            }
            if (!buffer.empty() && (!corked || buffer.size() >= limit)) {
                flush(me);
                return;
            }
            if (buffer.empty()) finish_flush();
        }

        void finish_flush() {
            if (!flushed) return;
            auto fn = std::move(flushed);
            flushed = nullptr;
            asio::post(socket.get_executor(), [fn = std::move(fn), ec = error]() mutable { fn(ec); });
        }
    };

    std::shared_ptr<shared> s_;
};

// Beast's closing handshake ends with a teardown of the layer: first send what is gathered
// (the close frame is among it), then the TCP teardown.
inline void teardown(boost::beast::role_type role, corked_socket& s, error_code& ec) {
    boost::beast::websocket::teardown(role, s.next_layer(), ec);
}

template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, corked_socket& s, TeardownHandler&& handler) {
    s.after_flush([role, &sock = s.next_layer(),
                   h = std::forward<TeardownHandler>(handler)](error_code) mutable {
        boost::beast::websocket::async_teardown(role, sock, std::move(h));
    });
}

}  // namespace framecast::io
