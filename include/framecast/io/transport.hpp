// The byte stream a session runs over. A session never asks which transport it has: TCP is one
// implementation (src/io/transport/tcp.*), an in-memory pipe drives unit tests, and TLS
// (asio::ssl::stream) or WebSocket (Beast) are new implementations, not session branches.
//
// The interface keeps the server's hot path: reads and writes are synchronous non-blocking
// calls into the server's shared buffers (one virtual call per system call, none per message),
// and a session waits for readiness only when a read finds nothing or a write is refused.
#pragma once

#include <memory>

#include <cstddef>
#include <exception>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "framecast/io/asio.hpp"
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>

typedef struct x509_st X509;

namespace framecast::io {

// One or more whole encoded frames, immutable, shared by every queue (see relay_unit.hpp).
using shared_frame = std::shared_ptr<const std::string>;

class transport {
public:
    virtual ~transport() = default;

    // Non-blocking read into `buf`. Nothing available: asio::error::would_block. End of
    // stream: asio::error::eof. Never waits.
    virtual std::size_t try_read(std::span<char> buf, error_code& ec) = 0;
    // Non-blocking gathered write of up to `bufs` (at most 64 buffers); returns the bytes
    // taken, possibly fewer than offered. Full: asio::error::would_block. Never waits.
    virtual std::size_t try_write(std::span<const asio::const_buffer> bufs, error_code& ec) = 0;
    // A transport that re-frames what it sends (WebSocket) can frame a relay unit once for
    // every client it goes to. It says so here; the session then passes whole units by
    // reference (not copied into its scratch buffer) to try_write_units(), where owners[i] is
    // the unit bufs[i] is part of (null: bytes of no unit). Same contract as try_write().
    virtual bool frames_units() const noexcept { return false; }
    virtual std::size_t try_write_units(std::span<const asio::const_buffer> bufs,
                                        std::span<const shared_frame* const> /*owners*/,
                                        error_code& ec) {
        return try_write(bufs, ec);
    }
    // Completes when a read may find bytes (or end of stream), or with an error; after
    // close(), with operation_aborted. A transport reporting readiness by edge completes only
    // for bytes arriving after the wait started: read until would_block first.
    virtual asio::awaitable<error_code> wait_readable() = 0;
    // Calls `fn(ec)` once, when wait_readable() would complete: a session waiting for input
    // then holds no coroutine (most of an idle client's cost). The default runs
    // wait_readable() in a coroutine of its own; TCP and WebSocket wait without one.
    virtual void on_readable(std::function<void(error_code)> fn) {
        asio::co_spawn(
            get_executor(), wait_readable(),
            [fn = std::move(fn)](std::exception_ptr e, error_code ec) mutable {
                fn(e ? error_code(asio::error::operation_aborted) : ec);
            });
    }
    // Completes when a write may take bytes again.
    virtual asio::awaitable<error_code> wait_writable() = 0;
    // Bytes a write took are still inside the transport, not yet in the socket (TLS: the
    // ciphertext of plaintext it took while the socket was full; after shutdown_send(), its
    // close_notify). A writer with nothing more queued keeps going until this is false:
    // wait_writable(), then try_write({}) sends them (returns 0; would_block if some is left).
    virtual bool output_pending() const noexcept { return false; }
    // Sends end of stream after what was written (TCP: FIN); reading stays possible.
    virtual void shutdown_send() noexcept = 0;
    // Closes now; pending waits complete with operation_aborted.
    virtual void close() noexcept = 0;
    // Why the next close() happens, for a transport that can tell the peer (WebSocket: the
    // close frame's reason text). Byte streams have no place for it: the default ignores it.
    virtual void set_close_reason(std::string_view /*why*/) noexcept {}
    // The peer as people read it, e.g. "127.0.0.1:50312" or "[::1]:50312".
    virtual std::string peer_name() const = 0;
    // The operating system's socket under it (-1: none, or not one of ours to show).
    virtual int native_handle() const noexcept { return -1; }
    virtual asio::any_io_executor get_executor() = 0;

    // The client certificate the connection's TLS handshake verified (mutual TLS), or null.
    // A transport layered over a TLS connection it does not own (wss://: WebSocket over the
    // gateway's TLS bridge) is given it with set_peer_certificate().
    virtual X509* peer_certificate() const { return cert_.get(); }
    void set_peer_certificate(std::shared_ptr<X509> cert) noexcept { cert_ = std::move(cert); }

    // Something to release when the connection is gone (the listener's per-address slot).
    void hold(std::shared_ptr<void> token) noexcept { token_ = std::move(token); }

private:
    std::shared_ptr<void> token_;
    std::shared_ptr<X509> cert_;
};

}  // namespace framecast::io
