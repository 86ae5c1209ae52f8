// The WebSocket transport: a Beast websocket::stream (after its handshake) presented to a
// session as the framecast byte stream, so every mode (time, stdin, --publish, --chat) works
// over it unchanged, with the same slow-consumer, backpressure and rate rules.
//
// Reading: a read loop (completion handlers) reads each WebSocket message, at most max_message
// + 1 bytes of it (over: close 1009 with the reason), and turns it into one framecast frame
// (header + payload) in a bounded buffer; try_read() takes from it. While the buffer holds more
// than in_limit bytes the loop stops reading (TCP then slows the browser down).
// Writing: try_write() parses the framecast frames the session writes (codec decoder) and
// frames each payload as one WebSocket message, text when it is valid UTF-8, else binary,
// straight into the corked socket's send buffer (server frames are unmasked: a 2-10 byte
// header; Beast only writes the control frames). A relay unit is framed once for all the
// WebSocket clients it goes to (transport/ws_frames_cache.hpp), so a client costs a copy, as a
// TCP client does; Beast's per-message write operation cost 3x the TCP fan-out
// (docs/bench.md). Bounded by out_limit unsent bytes (plus at most one whole unit of
// ws_frames_cache::max_unit): past it try_write() says would_block, and the session's own
// queue (client_buffer, slow-consumer policy) takes over.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "framecast/codec.hpp"
#include "framecast/io/transport.hpp"
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "transport/ws_cork.hpp"

namespace framecast::io {

// Over a corked socket: a batch of messages leaves in one write (transport/ws_cork.hpp).
using ws_stream = boost::beast::websocket::stream<corked_socket>;

class ws_transport final : public transport {
public:
    // Converted inbound bytes held before the read loop pauses, and unsent outbound bytes
    // before try_write() refuses more.
    static constexpr std::size_t in_limit = 64 * 1024;
    static constexpr std::size_t out_limit = 64 * 1024;

    // `ws` has completed its handshake; `codec` frames the inbound messages and parses the
    // outbound frames. `live`, if given, counts the connections whose state still exists
    // (closing ones flush their last messages and say goodbye after the session is gone).
    ws_transport(ws_stream ws, codec_options codec, std::string peer,
                 std::shared_ptr<std::size_t> live = nullptr);
    ~ws_transport() override;

    std::size_t try_read(std::span<char> buf, error_code& ec) override;
    std::size_t try_write(std::span<const asio::const_buffer> bufs, error_code& ec) override;
    // Whole units are framed once for every WebSocket client (transport/ws_frames_cache.hpp).
    bool frames_units() const noexcept override { return true; }
    std::size_t try_write_units(std::span<const asio::const_buffer> bufs,
                                std::span<const shared_frame* const> owners,
                                error_code& ec) override;
    asio::awaitable<error_code> wait_readable() override;
    void on_readable(std::function<void(error_code)> fn) override;
    asio::awaitable<error_code> wait_writable() override;
    // What was written is sent, then a close frame 1001 (going away).
    void shutdown_send() noexcept override;
    // Closes with 1008 (policy) unless shutdown_send() came first or the peer closed, after the
    // bytes already written; the close handshake is bounded by the stream's handshake timeout.
    void close() noexcept override;
    // The reason text of the close frame close() sends (1008), e.g. "flood: more than ...".
    void set_close_reason(std::string_view why) noexcept override;
    std::string peer_name() const override;
    asio::any_io_executor get_executor() override;

    struct state;

private:
    std::shared_ptr<state> s_;
};

// The text/binary rule in one place: a payload that is valid UTF-8 goes as a text message.
bool ws_is_text(std::string_view payload) noexcept;
// Appends one unmasked final frame (text or binary) carrying `payload` to `out`.
void ws_append_frame(std::string& out, std::string_view payload, bool text);

}  // namespace framecast::io
