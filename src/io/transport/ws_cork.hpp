// The layer under a server's Beast websocket::stream: a TCP socket whose writes are gathered.
// Beast writes each WebSocket message (and each ping, pong, close) with its own write; at
// fan-out that is one system call and one loopback segment per message per client, where a TCP
// client gets a whole batch in one. Between cork() and uncork() writes are queued and complete
// at once; uncork() sends them in one write. Uncorked, every write starts a send at once (control frames are never held back).
// Bounded: past `limit` buffered bytes a write waits for the send in flight to finish.
//
// The server's data frames do not go through Beast at all (ws_transport frames them itself:
// server frames are unmasked, so framing is a 2-10 byte header): it frames into gather(), or
// hands over a relay unit's frames made once for every client (share()), in the same ordered
// queue Beast's control frames go to; on_progress tells the transport when sent bytes made
// room. The queue is a list of segments sent with one gathered write: shared ones are
// referenced, not copied, so fan-out costs each client a reference, as a TCP client's does.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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

    // The end of the queue, to frame into without a copy; send() afterwards.
    std::string& gather() { return s_->tail(); }
    // Queues `bytes` as they are (shared with other clients, not copied); send() afterwards.
    void share(std::shared_ptr<const std::string> bytes) { s_->share(std::move(bytes)); }
    void send() {
        if (!s_->corked) shared::flush(s_);
    }
    // Bytes accepted and not yet taken by the kernel.
    std::size_t pending() const noexcept {
        const auto& q = s_->queue;
        const std::size_t tail = !q.empty() && q.back().owned ? q.back().owned->size() - s_->tail_counted : 0;
        return s_->queued + tail + s_->in_flight_bytes + s_->parked_bytes.size();
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
        if (s_->queue.empty() && !s_->sending) {
            asio::post(s_->socket.get_executor(), [fn = std::move(fn), ec = s_->error]() mutable { fn(ec); });
            return;
        }
        s_->flushed = asio::any_completion_handler<void(error_code)>(std::move(fn));
        shared::flush(s_);
    }

private:
    using write_handler = asio::any_completion_handler<void(error_code, std::size_t)>;

    // Bytes to send, in order: owned (gathered here) or shared (a relay unit's frames).
    struct segment {
        std::shared_ptr<const std::string> bytes;
        std::string* owned = nullptr;  // bytes, writable while this is the queue's last segment
    };

    struct shared {
        explicit shared(next_layer_type s) : socket(std::move(s)) {}
        next_layer_type socket;
        std::string replay;   // read before the handshake, not yet taken (see replay())
        std::vector<segment> queue;     // not yet handed to the socket
        std::size_t queued = 0;         // bytes in queue, but for the open owned tail's growth
        std::vector<segment> in_flight;  // being written
        std::vector<asio::const_buffer> in_flight_bufs;
        std::size_t in_flight_bytes = 0;
        bool sending = false;
        bool corked = false;
        error_code error;
        write_handler parked;  // a write waiting for room (Beast writes one at a time)
        std::string parked_bytes;
        asio::any_completion_handler<void(error_code)> flushed;
        std::function<void()> progress;
        std::size_t tail_counted = 0;   // of the owned tail's size, what `queued` includes

        // The owned segment at the end of the queue (a new one after a shared segment).
        std::string& tail() {
            if (queue.empty() || queue.back().owned == nullptr) {
                auto bytes = std::make_shared<std::string>();
                std::string* raw = bytes.get();
                queue.push_back({std::move(bytes), raw});
                tail_counted = 0;
            }
            return *queue.back().owned;
        }
        // Counts what was framed into the tail since it was last counted.
        void count_tail() {
            if (queue.empty() || queue.back().owned == nullptr) return;
            queued += queue.back().owned->size() - tail_counted;
            tail_counted = queue.back().owned->size();
        }
        void share(std::shared_ptr<const std::string> bytes) {
            count_tail();
            if (bytes->empty()) return;
            queued += bytes->size();
            queue.push_back({std::move(bytes), nullptr});
        }
        std::size_t queued_bytes() {
            count_tail();
            return queued;
        }

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
            if (queued_bytes() + bytes.size() > limit && (sending || !queue.empty())) {
                parked = std::move(handler);
                parked_bytes = std::move(bytes);
                flush(self());
                return;
            }
            const std::size_t n = bytes.size();
            tail() += bytes;
            count_tail();
            if (!corked) flush(self());
            asio::post(ex, [h = std::move(handler), n]() mutable { std::move(h)(error_code{}, n); });
        }

        std::shared_ptr<shared> self() { return weak.lock(); }
        std::weak_ptr<shared> weak;  // set by corked_socket's constructor

        static void flush(const std::shared_ptr<shared>& s) {
            if (s->sending || s->error) return;
            s->count_tail();
            if (s->queue.empty()) {
                s->finish_flush();
                return;
            }
            s->sending = true;
            std::swap(s->queue, s->in_flight);
            s->in_flight_bytes = s->queued;
            s->queued = 0;
            s->tail_counted = 0;
            s->in_flight_bufs.clear();
            for (const auto& seg : s->in_flight) {
                if (!seg.bytes->empty()) s->in_flight_bufs.push_back(asio::buffer(*seg.bytes));
            }
            asio::async_write(s->socket, s->in_flight_bufs,
                              [s](error_code ec, std::size_t) {
                                  s->sending = false;
                                  s->in_flight.clear();
                                  s->in_flight_bufs.clear();
                                  s->in_flight_bytes = 0;
                                  // An idle client does not keep a burst's list.
                                  if (s->in_flight.capacity() > 64) {
                                      std::vector<segment>().swap(s->in_flight);
                                      std::vector<asio::const_buffer>().swap(s->in_flight_bufs);
                                  }
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
                if (!error) {
                    tail() += parked_bytes;
                    count_tail();
                }
                parked_bytes.clear();
                auto ec = error;
                asio::post(socket.get_executor(),
                           [h = std::move(h), ec, n]() mutable { std::move(h)(ec, ec ? 0 : n); });
            }
            if (error) {
                queue.clear();
                queued = 0;
                tail_counted = 0;
                finish_flush();
                return;
            }
            if (!queue.empty() && (!corked || queued_bytes() >= limit)) {
                flush(me);
                return;
            }
            if (queue.empty()) finish_flush();
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
