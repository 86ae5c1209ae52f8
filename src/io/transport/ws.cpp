#include "transport/ws.hpp"
#include "transport/ws_frames_cache.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/error.hpp>
#include <spdlog/spdlog.h>

namespace framecast::io {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using steady = std::chrono::steady_clock;

bool ws_is_text(std::string_view payload) noexcept {
    return count_code_points(payload).has_value();
}

namespace {

// A wait until woken: the timer never fires on its own, wake() cancels it. sleep() is the
// timer's own operation, awaited by the caller (no coroutine frame of its own: an idle client
// waits in every session).
struct sleeper {
    explicit sleeper(const asio::any_io_executor& ex) : timer(ex) {}
    asio::steady_timer timer;
    bool waiting = false;
    auto sleep() {
        waiting = true;
        timer.expires_at(steady::time_point::max());
        return timer.async_wait(use_nothrow);
    }
    void wake() {
        if (!waiting) return;
        waiting = false;
        timer.cancel();
    }
};

// A flat_buffer as Beast sees it while reading: Beast prepares min(1536, max_size() - size())
// bytes before it waits for the socket, so an idle client would hold 1.5 KiB for a message that
// may never come. Reporting a max_size() that doubles with what was read keeps that first
// allocation at 128 bytes; a larger message is read in steps of 128, 256, ... 1536 bytes (as
// before). read_message_max, not this, bounds a message.
struct growing_buffer {
    beast::flat_buffer& b;
    using const_buffers_type = beast::flat_buffer::const_buffers_type;
    using mutable_buffers_type = beast::flat_buffer::mutable_buffers_type;
    std::size_t size() const noexcept { return b.size(); }
    std::size_t max_size() const noexcept {
        return std::min(b.max_size(), b.size() + std::max<std::size_t>(128, b.size()));
    }
    std::size_t capacity() const noexcept { return b.capacity(); }
    const_buffers_type data() const noexcept { return b.data(); }
    const_buffers_type cdata() const noexcept { return b.cdata(); }
    mutable_buffers_type data() noexcept { return b.data(); }
    mutable_buffers_type prepare(std::size_t n) { return b.prepare(n); }
    void commit(std::size_t n) noexcept { b.commit(n); }
    void consume(std::size_t n) noexcept { b.consume(n); }
};

// Closing frames wait this long at most for the queue to flush and the close handshake.
constexpr auto linger = std::chrono::seconds(5);

}  // namespace

struct ws_transport::state {
    state(ws_stream w, codec_options c, std::string p, std::shared_ptr<std::size_t> l)
        : ws(std::move(w)), codec(c), peer(std::move(p)), live(std::move(l)),
          out_dec(c, decode_mode::whole), readable(ws.get_executor()),
          writable(ws.get_executor()) {
        if (live) ++*live;
    }
    ~state() {
        if (live) --*live;
    }

    ws_stream ws;
    codec_options codec;
    std::string peer;
    std::shared_ptr<std::size_t> live;  // the gateway's count of connections not yet gone

    // Inbound: frames made of received messages, not yet taken by try_read().
    std::string in;
    std::size_t in_off = 0;
    error_code in_ec;  // why reading ended (eof: the peer closed); set once
    beast::flat_buffer rbuf;
    growing_buffer rbuf_view{rbuf};  // what Beast reads into (see growing_buffer)

    // Outbound: the session's frames are parsed and each payload is framed straight into the
    // corked socket's buffer (bounded by out_limit, see try_write()).
    decoder out_dec;
    error_code out_ec;

    sleeper readable;  // wait_readable()
    std::function<void(error_code)> readable_fn;  // on_readable()
    bool reading = false;  // an async_read is under way
    sleeper writable;  // the session's wait_writable()
    // Bounds a closing connection's goodbye; made at close() (an idle client needs no timer).
    std::unique_ptr<asio::steady_timer> lingering;

    bool shut = false;    // shutdown_send(): flush, then close 1001
    bool closed = false;  // close(): the session is done with us
    bool closing = false;  // our close frame is on its way (close_ws under way)
    std::string close_why;  // set_close_reason(): the close frame's reason text

    std::size_t in_available() const noexcept { return in.size() - in_off; }

    // A read may find bytes, or the end: whoever waits is told. Posted, never called here:
    // this runs inside the read loop's handler (take_message), and the session's reader
    // would read, and start the next Beast read, before that handler is done with rbuf.
    void notify_readable() {
        readable.wake();
        if (readable_fn) {
            auto fn = std::move(readable_fn);
            readable_fn = nullptr;
            const error_code ec = closed ? error_code(asio::error::operation_aborted) : error_code();
            try {
                asio::post(ws.get_executor(), [fn = std::move(fn), ec] { fn(ec); });
            } catch (const std::bad_alloc&) {
                spdlog::error("websocket {}: out of memory waking its reader", peer);
            }
        }
    }

    void end_reading(const error_code& ec) {
        if (ec == websocket::error::closed || ec == asio::error::eof) {
            in_ec = asio::error::eof;
        } else {
            in_ec = ec;
        }
        notify_readable();
    }

    void take_message(std::string_view payload) {
        frame_header h;
        if (auto ec = encode_header(payload, h, codec)) {
            // Only in code-point mode (a binary message is not UTF-8): the session closes it.
            spdlog::debug("websocket {}: cannot frame a message: {}", peer, ec.message());
            in_ec = asio::error::invalid_argument;
            notify_readable();
            return;
        }
        if (in_off > 0 && in_off * 2 >= in.size()) {
            in.erase(0, in_off);
            in_off = 0;
        }
        in.append(h.data(), h.size());
        in.append(payload);
        notify_readable();
    }

    std::size_t out_pending() const noexcept { return ws.next_layer().pending(); }
    bool may_write(error_code& ec, bool& discard);
    bool frame_into(std::string& out, std::span<const char> in, error_code& ec);

    void close_socket() {
        if (lingering) lingering->cancel();
        error_code ignored;
        beast::get_lowest_layer(ws).close(ignored);
    }
};

namespace {

using state_ptr = std::shared_ptr<ws_transport::state>;

}  // namespace

namespace {

// A close frame's reason: at most 123 bytes (RFC 6455 5.5), cut at a character boundary, and
// valid UTF-8 (a peer fails the connection otherwise): other bytes become '?'.
websocket::close_reason reason_for(websocket::close_code code, std::string_view why) {
    std::string r(why.substr(0, 123));
    if (why.size() > 123) {
        while (!r.empty() && (static_cast<unsigned char>(r.back()) & 0xC0) == 0x80) r.pop_back();
        if (!r.empty() && static_cast<unsigned char>(r.back()) >= 0xC0) r.pop_back();
    }
    if (!ws_is_text(r)) {
        for (auto& c : r) {
            if (static_cast<unsigned char>(c) >= 0x80) c = '?';
        }
    }
    return websocket::close_reason(code, r);
}

// Sends the close frame (bounded by the stream's handshake timeout), then closes the socket.
asio::awaitable<void> close_ws(state_ptr s, websocket::close_reason why) {
    if (s->ws.is_open()) co_await s->ws.async_close(why, use_nothrow);
    s->close_socket();
}

void start_close(const state_ptr& s, websocket::close_code code) {
    s->closing = true;
    asio::co_spawn(s->ws.get_executor(), close_ws(s, reason_for(code, s->close_why)),
                   asio::detached);
}

// A message over --max-message: 1009 with the limit in the reason (Beast's own check sends
// no reason text, so the bound is kept here: at most max_message + 1 bytes are ever held).
void too_big(const state_ptr& s) {
    s->rbuf = beast::flat_buffer();
    s->close_why = "message over " + std::to_string(s->codec.max_message) +
                   " bytes (max message)";
    s->in_ec = websocket::error::message_too_big;
    s->notify_readable();
    try {
        start_close(s, websocket::close_code::too_big);
    } catch (...) {
        s->close_socket();
    }
}

}  // namespace

// Reads the next part of a message unless a read is under way, the converted bytes are full
// (try_read() calls again once they are not) or reading is over. A completion handler, not a
// coroutine: an idle client waiting for a message holds a 16-byte handler, not coroutine frames.
void ws_read_next(const state_ptr& s) {
    if (s->reading || s->closed || s->closing || s->in_ec) return;
    if (s->in_available() >= ws_transport::in_limit) return;
    s->reading = true;
    // One byte over the limit is enough to know: never more than max_message + 1 are held.
    const std::size_t max = s->codec.max_message;
    const std::size_t want = max + 1 - std::min(max, s->rbuf.size());
    s->ws.async_read_some(s->rbuf_view, want, [s](error_code ec, std::size_t) {
        s->reading = false;
        if (ec) {
            s->end_reading(ec);
            return;
        }
        if (s->rbuf.size() > s->codec.max_message) {
            too_big(s);
            return;
        }
        if (s->ws.is_message_done()) {
            const auto data = s->rbuf.cdata();
            s->take_message({static_cast<const char*>(data.data()), data.size()});
            s->rbuf.consume(s->rbuf.size());
            // An idle client that once received a large message does not keep its buffer.
            if (s->rbuf.capacity() > 16 * 1024) s->rbuf = beast::flat_buffer();
        }
        ws_read_next(s);
    });
}

namespace {

// A closing connection gets `linger` to flush and say goodbye; then the socket goes.
asio::awaitable<void> reaper(state_ptr s) {
    if (!s->lingering) s->lingering = std::make_unique<asio::steady_timer>(s->ws.get_executor());
    s->lingering->expires_after(linger);
    auto [ec] = co_await s->lingering->async_wait(use_nothrow);
    if (!ec) s->close_socket();
}

}  // namespace

ws_transport::ws_transport(ws_stream ws, codec_options codec, std::string peer,
                           std::shared_ptr<std::size_t> live)
    : s_(std::make_shared<state>(std::move(ws), codec, std::move(peer), std::move(live))) {
    // No limit in Beast: ws_read_next() bounds a message itself, to say why in the 1009 frame.
    s_->ws.read_message_max(0);
    // Beast writes only control frames (pong, close): data frames are framed here.
    s_->ws.write_buffer_bytes(512);
    s_->ws.next_layer().on_progress([w = std::weak_ptr<state>(s_)] {
        if (auto s = w.lock()) {
            if (s->ws.next_layer().error()) s->out_ec = s->ws.next_layer().error();
            if (s->out_pending() < out_limit || s->out_ec) s->writable.wake();
        }
    });
    ws_read_next(s_);
}

ws_transport::~ws_transport() { close(); }

std::size_t ws_transport::try_read(std::span<char> buf, error_code& ec) {
    auto& s = *s_;
    const std::size_t avail = s.in_available();
    if (avail == 0) {
        ec = s.in_ec ? s.in_ec : error_code(asio::error::would_block);
        return 0;
    }
    ec = {};
    const std::size_t n = std::min(avail, buf.size());
    std::memcpy(buf.data(), s.in.data() + s.in_off, n);
    s.in_off += n;
    if (s.in_off == s.in.size()) {
        s.in_off = 0;
        if (s.in.capacity() > 4096) {
            std::string().swap(s.in);
        } else {
            s.in.clear();
        }
    }
    if (s.in_available() < in_limit) ws_read_next(s_);
    return n;
}

// One server frame (FIN, unmasked, RFC 6455 5.2) in front of `payload`, appended to `out`.
void ws_append_frame(std::string& out, std::string_view payload, bool text) {
    char h[10];
    std::size_t n = 2;
    h[0] = static_cast<char>(0x80 | (text ? 0x1 : 0x2));
    const std::uint64_t len = payload.size();
    if (len < 126) {
        h[1] = static_cast<char>(len);
    } else if (len <= 0xffff) {
        h[1] = 126;
        h[2] = static_cast<char>(len >> 8);
        h[3] = static_cast<char>(len);
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; ++i) h[2 + i] = static_cast<char>(len >> (56 - 8 * i));
        n = 10;
    }
    out.append(h, n);
    out.append(payload);
}

namespace {

// Each whole framecast frame `dec` completes from `in` becomes one WebSocket message in `out`
// (text when its payload is UTF-8, else binary); a frame cut short waits in `dec`. False on a
// frame the codec cannot parse.
bool ws_frame_messages(decoder& dec, std::span<const char> in, std::string& out) {
    for (;;) {
        const auto ev = dec.next(in);
        if (ev == decode_event::need_more) return true;
        if (ev == decode_event::error) return false;
        const auto payload = dec.payload();
        ws_append_frame(out, payload, ws_is_text(payload));
    }
}

}  // namespace

std::shared_ptr<const std::string> ws_frames_cache::get(const std::shared_ptr<const std::string>& unit,
                                                        const codec_options& codec) {
    if (unit->size() > max_unit) return nullptr;
    for (auto& e : entries_) {
        if (e.address == unit.get() && e.header_size == codec.header_size && e.unit == codec.unit &&
            !e.owner.owner_before(unit) && !unit.owner_before(e.owner)) {
            return e.framed;
        }
    }
    auto framed = std::make_shared<std::string>();
    decoder dec(codec, decode_mode::whole);
    if (!ws_frame_messages(dec, {unit->data(), unit->size()}, *framed) || !dec.at_frame_boundary()) {
        return nullptr;  // not whole frames
    }
    entry& e = entries_[next_];
    next_ = (next_ + 1) % entries;
    e.owner = unit;
    e.address = unit.get();
    e.header_size = codec.header_size;
    e.unit = codec.unit;
    e.framed = std::move(framed);
    return e.framed;
}

ws_frames_cache& ws_frames_cache::local() {
    thread_local ws_frames_cache cache;
    return cache;
}

// Whether try_write() may take bytes now: false with `ec` set (an error, or would_block when
// out_limit bytes wait to be sent), or with `discard` set when the peer's close is under way
// (what is written meanwhile has nobody to go to: it is taken and dropped).
bool ws_transport::state::may_write(error_code& ec, bool& discard) {
    ec = {};
    discard = false;
    if (!out_ec && ws.next_layer().error()) out_ec = ws.next_layer().error();
    if (out_ec) {
        ec = out_ec;
        return false;
    }
    if (closed || shut) {
        ec = asio::error::not_connected;
        return false;
    }
    if (!ws.is_open()) {
        // The read loop reports the peer's close (end of stream) in a moment.
        discard = true;
        return false;
    }
    if (out_pending() >= out_limit) {
        ec = asio::error::would_block;
        return false;
    }
    return true;
}

// Frames whatever whole framecast frames `in` completes into `out` (one WebSocket message
// per frame). False on a frame the codec cannot parse (logged; the session wrote it: a bug).
bool ws_transport::state::frame_into(std::string& out, std::span<const char> in, error_code& ec) {
    if (ws_frame_messages(out_dec, in, out)) return true;
    spdlog::error("websocket {}: bad outbound frame: {}", peer, out_dec.error_message());
    ec = asio::error::invalid_argument;
    return false;
}

namespace {

std::size_t total_size(std::span<const asio::const_buffer> bufs) {
    std::size_t total = 0;
    for (const auto& b : bufs) total += b.size();
    return total;
}

}  // namespace

std::size_t ws_transport::try_write(std::span<const asio::const_buffer> bufs, error_code& ec) {
    return try_write_units(bufs, {}, ec);
}

// A WebSocket header (2-10 bytes) is never longer than the framecast header it replaces, so
// taking `room` framecast bytes adds at most `room` bytes to the socket's buffer. A whole unit
// (owners[i] set, the buffer is all of it, no frame of ours half parsed) is framed once for
// all clients (ws_frames_cache) and taken whole while there is any room; anything else is
// parsed and framed here, up to the room.
std::size_t ws_transport::try_write_units(std::span<const asio::const_buffer> bufs,
                                          std::span<const shared_frame* const> owners,
                                          error_code& ec) {
    auto& s = *s_;
    bool discard = false;
    if (!s.may_write(ec, discard)) return discard ? total_size(bufs) : 0;
    const std::size_t room = out_limit - s.out_pending();
    auto& cache = ws_frames_cache::local();
    std::size_t taken = 0;
    for (std::size_t i = 0; i < bufs.size() && taken < room; ++i) {
        const auto& b = bufs[i];
        const shared_frame* owner = i < owners.size() ? owners[i] : nullptr;
        if (owner != nullptr && b.size() == (*owner)->size() && b.data() == (*owner)->data() &&
            s.out_dec.at_frame_boundary()) {
            // Whole, even past `room`: a unit is at most max_unit bytes, so the socket's buffer
            // holds at most out_limit + max_unit unsent bytes.
            if (auto framed = cache.get(*owner, s.codec)) {
                s.ws.next_layer().share(std::move(framed));
                taken += b.size();
                continue;
            }
        }
        const std::size_t len = std::min(b.size(), room - taken);
        if (!s.frame_into(s.ws.next_layer().gather(), {static_cast<const char*>(b.data()), len}, ec)) {
            s.ws.next_layer().send();
            return taken;
        }
        taken += len;
    }
    s.ws.next_layer().send();
    return taken;
}

asio::awaitable<error_code> ws_transport::wait_readable() {
    auto s = s_;
    if (s->in_available() == 0 && !s->in_ec && !s->closed) {
        auto [woken] = co_await s->readable.sleep();  // cancelled by wake(): not an error
        (void)woken;
    }
    co_return s->closed ? error_code(asio::error::operation_aborted) : error_code();
}

void ws_transport::on_readable(std::function<void(error_code)> fn) {
    auto& s = *s_;
    s.readable_fn = std::move(fn);
    if (s.in_available() > 0 || s.in_ec || s.closed) s.notify_readable();
}

asio::awaitable<error_code> ws_transport::wait_writable() {
    auto s = s_;
    if (s->out_pending() >= out_limit && !s->out_ec && !s->closed) {
        auto [woken] = co_await s->writable.sleep();  // cancelled by wake(): not an error
        (void)woken;
    }
    co_return s->closed ? error_code(asio::error::operation_aborted) : error_code();
}

void ws_transport::shutdown_send() noexcept {
    auto& s = *s_;
    if (s.shut || s.closed) return;
    s.shut = true;
    // What was written is already in the socket's buffer, ahead of the close frame.
    try {
        if (s.ws.is_open() && !s.closing) {
            // A reason given first (a refused authentication) is the server closing this
            // client for a reason, after its last words: 1008 with the reason.
            auto code = websocket::close_code::policy_error;
            if (s.close_why.empty()) {
                s.close_why = "server going away";
                code = websocket::close_code::going_away;
            }
            start_close(s_, code);
        }
    } catch (...) {
        s.close_socket();
    }
}

void ws_transport::close() noexcept {
    auto& s = *s_;
    if (s.closed) return;
    s.closed = true;
    s.notify_readable();
    s.writable.wake();
    try {
        auto ex = s.ws.get_executor();
        asio::co_spawn(ex, reaper(s_), asio::detached);
        // After shutdown_send() the write loop flushes and closes with 1001; the peer's own
        // close needs no answer. Otherwise the server closed this client for a reason: 1008.
        if (s.closing) {
            // Our close frame is on its way (1009, 1001): the reaper bounds its handshake.
        } else if (!s.shut && !s.in_ec && s.ws.is_open()) {
            start_close(s_, websocket::close_code::policy_error);
        } else if (!s.shut) {
            s.close_socket();
        }
    } catch (...) {
        s.close_socket();  // out of memory for a coroutine frame: close without goodbye
    }
}

void ws_transport::set_close_reason(std::string_view why) noexcept {
    try {
        if (!s_->closing) s_->close_why.assign(why);
    } catch (...) {
        // Out of memory: the close goes without its reason.
    }
}

std::string ws_transport::peer_name() const { return s_->peer; }

asio::any_io_executor ws_transport::get_executor() { return s_->ws.get_executor(); }

}  // namespace framecast::io
