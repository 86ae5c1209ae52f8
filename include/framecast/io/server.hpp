// The framecast streaming server as a library component: listeners, one session per client,
// and a broadcast hub that encodes each message once and queues a pointer to it per client.
//
// Threading: a server and everything it owns run on one io_context, driven by one thread.
// Other threads hand it work with asio::post (see stdin_source).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "framecast/io/asio.hpp"
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "framecast/backplane.hpp"
#include "framecast/codec.hpp"
#include "framecast/io/channel_limits.hpp"
#include "framecast/io/frame_queue.hpp"
#include "framecast/io/relay_unit.hpp"
#include "framecast/io/transport.hpp"
#include <boost/asio/ip/address.hpp>

namespace framecast::io {

struct server_options {
    codec_options codec{.header_size = default_header_size, .max_message = 1024 * 1024};
    // Sent to each client as its first frame; empty: no welcome.
    std::string welcome = "Welcome to the server!";
    // Frames a client sends are broadcast to every other client.
    bool publish = false;
    // Clients connected at once; one more is accepted, logged and closed. 0: no limit beyond
    // file descriptors. The default leaves room for many honest clients while bounding what
    // idle sockets can take (see docs/security.md).
    std::size_t max_clients = 10'000;
    // Clients connected at once from one IP address (IPv4, or IPv6 /64); 0: no limit.
    std::size_t max_per_address = 256;
    // What clients can make the whole process hold (partial inbound frames, outbound queues,
    // history, pending backplane appends), in bytes; 0: no limit. At it, the clients holding
    // inbound bytes stop being read, the slow-consumer policy is applied to the largest queues
    // first, and new connections are refused (see memory_budget.hpp).
    std::size_t memory_limit = std::size_t{1} << 30;
    // A client in the middle of a frame must send at least this many bytes per second,
    // measured over min_inbound_window, or it is closed (slowloris by bytes); 0: no minimum.
    std::size_t min_inbound_rate = 1024;
    std::chrono::milliseconds min_inbound_window{std::chrono::seconds(10)};
    std::size_t client_buffer = 8 * 1024 * 1024;
    slow_consumer_policy slow_consumer = slow_consumer_policy::disconnect;
    // A client that stays in the middle of an inbound frame this long is closed; 0: never.
    std::chrono::milliseconds idle_timeout{std::chrono::seconds(30)};
    // Backpressure: while a client's queue is over half of client_buffer, sources that can
    // wait (a when_ready() caller such as the stdin source; clients' publishing, which the
    // server stops reading) wait for it to fall back to a quarter, each client for at most
    // this long; after that it is left to the slow-consumer policy. 0: nobody waits.
    std::chrono::milliseconds backpressure{std::chrono::seconds(2)};
    // Inbound messages per second per client before it counts as a flood; 0: no limit. The
    // default is far above what an honest client sends and stops an empty-frame flood.
    std::uint32_t max_rate = 100'000;
    // Inbound bytes per second per client (frames' payload and headers), bursts up to the
    // same; 0: no limit.
    std::uint64_t max_rate_bytes = 256ull << 20;
    // The tutorial series' chat room (see chat_options). Excludes `publish` and a welcome: a
    // chat client reads every frame it receives as half of a (username, message) pair.
    struct chat_options {
        bool enabled = false;
        // A client's first frame is its username: non-empty, valid UTF-8, at most this many
        // bytes. A client breaking the rules is closed (the protocol has no error frame).
        std::size_t max_name = 64;
        // A name already in use on this server closes the newcomer.
        bool unique_names = false;
        // Relays kept for newcomers: a joining client first receives the last `history` of
        // them (also bounded to half of client_buffer bytes, so the replay fits its queue).
        std::size_t history = 0;
    } chat;
    // TLS on the listener (off unless `cert` is set): every accepted connection does the TLS
    // handshake, within `handshake_timeout`, before it counts as a client.
    struct tls_options {
        std::string cert;       // PEM certificate chain, leaf first
        std::string key;        // PEM private key
        std::string client_ca;  // PEM CAs; set: a client certificate they signed is required
        std::chrono::milliseconds handshake_timeout{std::chrono::seconds(10)};
        bool enabled() const noexcept { return !cert.empty(); }
    } tls;
    // Authentication (docs/security.md). JWT: a client's first frame is a token; a client
    // without a valid one is told why in one frame and closed, and never sees a message. Off
    // unless `jwt_key` is set. Certificates (`cert`, needs tls.client_ca): the identity is the
    // verified client certificate's; no token is sent.
    struct auth_options {
        std::string jwt_key;             // HS256: a file with the shared secret; RS256/ES256: PEM public key
        std::string jwt_alg = "HS256";   // the only algorithm accepted
        bool enabled() const noexcept { return !jwt_key.empty(); }  // JWT authentication
        // Identities from TLS client certificates: the first email, DNS or URI
        // subjectAltName, else the subject's CN.
        bool cert = false;
        // cert: permissions per identity, each as JSON of a token's "framecast" claim's shape;
        // the identity "*" is the default for those not listed. None: every verified
        // certificate may do anything; a table without "*": identities not listed are refused.
        std::optional<std::map<std::string, std::string>> cert_permissions;
    } auth;
    // Channels (docs/channels.md): clients SUB/UNSUB patterns and PUB to channels; every
    // delivery is a (channel, payload) pair. Excludes publish, chat, a welcome and sources.
    struct channel_options {
        bool enabled = false;
        channel_limits limits;
        // Per-channel counters in the metrics for at most this many channels (the first ones
        // published to); the others add up under channel="_other". 0: none (the default).
        std::size_t metrics_channels = 0;
    } channels;
    // Resume (docs/resume.md): every broadcast message gets an offset; the recent ones are
    // kept (by count and bytes, under memory_limit) and a client whose first frame is
    // "@resume ..." gets the backlog from its last offset, then the live stream, each piece
    // with its position. Clients that do not ask see what they always saw. With channels,
    // offsets and histories are per channel (docs/resume.md#channels). Excludes chat.
    struct resume_options {
        bool enabled = false;
        std::size_t history_messages = 100'000;  // the resume window, at least
        std::size_t history_bytes = 64u << 20;   // ... unless this many bytes are held first
        std::string epoch;  // empty: random at start (the history dies with the process)
        // With channels: history_messages is each channel's window, history_bytes the bound
        // on all channels' histories together, and so is this on their messages.
        std::size_t channel_total_messages = 1'000'000;
        // With channels: channels remembered once their history is empty (their next offset).
        std::size_t idle_channels = 100'000;
        // With a shared log (set_history_fetch): resuming clients reading the log's past at
        // once (each has at most one piece of about 64 KiB in flight); the others wait.
        std::size_t log_replays = 8;
    } resume;
    // Publishing that survives reconnects (docs/resume.md, "Publishing"): a publishing client
    // whose first frame is "@publish NONCE PUBLISHER [FIRST]" is answered "@published NONCE
    // LAST"; its later messages are numbered LAST+1, LAST+2, ..., acknowledged ("@ack NONCE
    // SEQ", cumulative, coalesced per read) and dropped when their number was accepted before
    // (a resend after a reconnection). Needs publish or channels; excludes chat.
    struct publish_ack_options {
        bool enabled = false;
        std::size_t max_publishers = 10'000;  // remembered at once (the idle ones make room)
        // A publisher with no connection is forgotten after this long.
        std::chrono::milliseconds expiry{std::chrono::minutes(10)};
    } publish_acks;
};

// "" or what is wrong with `json` as permissions of the "framecast" claim's shape, naming the
// keys from `what` (e.g. `permissions."alice"`): for checking a configuration before it runs.
std::string permissions_error(std::string_view json, std::string_view what);

// How many bytes of frames travel as one relay unit when messages are relayed in batches (a
// publisher's read, lines of stdin): 64 KiB, at most an eighth of client_buffer so the
// slow-consumer policy still works in small units; a longer message is a unit of its own.
// With lengths in code points: 0, one message per unit.
std::size_t relay_unit_bytes(const server_options& o) noexcept;

// What the server has done so far. Plain numbers, read on the server's thread.
struct server_counters {
    std::uint64_t clients_accepted = 0;
    std::uint64_t clients_rejected = 0;   // over max_clients
    std::uint64_t clients_current = 0;
    std::uint64_t messages_in = 0;        // frames decoded from clients
    std::uint64_t bytes_in = 0;           // bytes read from clients
    std::uint64_t messages_broadcast = 0; // messages that entered the hub
    std::uint64_t frames_out = 0;         // frames fully written to clients
    std::uint64_t bytes_out = 0;          // bytes written to clients
    std::uint64_t decode_errors = 0;      // clients closed for bad input (incl. truncation)
    // The same, by framecast::errc value (index 0 unused).
    std::array<std::uint64_t, errc_count + 1> decode_errors_by_kind{};
    std::uint64_t deliveries = 0;         // frames queued to clients by broadcasts (fan-out)
    std::uint64_t idle_timeouts = 0;
    std::uint64_t floods = 0;
    std::uint64_t slow_disconnects = 0;
    std::uint64_t slow_dropped_frames = 0;
    std::uint64_t slow_dropped_bytes = 0;
    std::uint64_t accept_errors = 0;
    std::uint64_t backpressure_waits = 0;     // a source or publisher waited for a client
    std::uint64_t backpressure_timeouts = 0;  // a client held them back for `backpressure`
    std::uint64_t chat_joins = 0;         // chat: usernames accepted
    std::uint64_t chat_names_rejected = 0;  // chat: clients closed for their username
    std::uint64_t tls_handshake_failures = 0;  // TLS: connections closed before they were clients
    std::uint64_t auth_refused = 0;   // auth: clients refused (no, bad or expired token)
    std::uint64_t auth_expired = 0;   // auth: clients closed when their token expired
    std::uint64_t channel_subscribes = 0;    // channels: subscriptions added
    std::uint64_t channel_unsubscribes = 0;  // channels: removed (UNSUB or the client left)
    std::uint64_t channel_errors = 0;        // channels: commands refused with a notice
    std::uint64_t memory_refused = 0;     // connections refused at the memory limit
    std::uint64_t memory_paused = 0;      // reads paused at the memory limit
    std::uint64_t memory_relieved = 0;    // queues the slow-consumer policy was applied to there
    std::uint64_t per_address_rejected = 0;  // over max_per_address
    std::uint64_t backpressure_repeat = 0;   // left to the slow-consumer policy at once (held
                                             // the sources for `backpressure` recently)
    std::uint64_t resume_requests = 0;   // resume: requests answered
    std::uint64_t resume_refused = 0;    // resume: malformed requests refused
    std::uint64_t resume_gaps = 0;       // resume: clients told messages were lost (window, epoch)
    std::uint64_t resume_replayed = 0;   // resume: messages replayed from the history
    std::uint64_t resume_log_replayed = 0;  // resume: of those, read from the shared log's past
    std::uint64_t publish_requests = 0;    // publish acks: "@publish" requests answered
    std::uint64_t publish_refused = 0;     // publish acks: requests refused (malformed, full)
    std::uint64_t publish_accepted = 0;    // publish acks: numbered messages accepted
    std::uint64_t publish_duplicates = 0;  // publish acks: numbered messages dropped as repeats
    std::uint64_t publish_acks = 0;        // publish acks: "@ack" frames sent
};

// Per-channel counters (server_options::channel_options::metrics_channels).
struct channel_metric {
    std::string channel;           // "_other": every channel past the limit
    std::uint64_t published = 0;   // messages published to it
    std::uint64_t deliveries = 0;  // messages queued to its subscribers
};

// A connected client, as the server's public interface names it (opaque).
class session;

class server {
public:
    server(asio::io_context& io, server_options opts);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // Binds and listens; returns the bound endpoint (port 0 becomes the chosen port). Throws
    // std::system_error (e.g. address_in_use).
    asio::ip::tcp::endpoint listen(const asio::ip::tcp::endpoint& ep);
    // Binds [::] dual-stack on `port`, or 0.0.0.0 when IPv6 is unavailable.
    asio::ip::tcp::endpoint listen_any(std::uint16_t port);

    // Starts accepting on every listener, and the idle-timeout sweep.
    void start();
    // TLS: reads the certificate, key and client CA files again; the handshakes that follow use
    // them, the clients already connected keep theirs. On failure (a file missing, a key that
    // does not match) keeps the old ones and returns the reason.
    std::string reload_tls();
    // --auth cert: the [permissions] table `table` (none: every verified certificate may do
    // everything) for the connections that follow; the clients already connected keep the
    // permissions they were admitted with. A bad entry keeps the old table and returns why.
    std::string reload_permissions(std::optional<std::map<std::string, std::string>> table);
    // Serves a client over `t` (what the listener does with each TCP connection; also the way
    // in for other transports and for tests). Ignored while shutting down.
    void admit(std::unique_ptr<transport> t);
    // The same, for a client that proved who it is (auth): named in the log, closed when its
    // token expires.
    void admit(std::unique_ptr<transport> t, const struct identity& who);
    // A connection accepted elsewhere (the WebSocket gateway): with auth on, its first frame
    // (message) must be a token, as on the TCP listener; then admit(). `from`, if given, is
    // the client's address, counted against max_per_address (over it: closed at once).
    void accept(std::unique_ptr<transport> t, const asio::ip::address* from = nullptr);

    // Broadcasts `payload` to every client except `origin` (null: to all). Encodes once. Not
    // for chat mode, where every delivery must be a (username, message) pair.
    void broadcast(std::string_view payload, const session* origin = nullptr);
    // Broadcasts a relay unit: one or more whole frames and the number of messages in them,
    // sent to each client as one unit (never split by the slow-consumer policy). In chat mode
    // these are relays (username frame + message frame: one message), delivered only to
    // clients that have joined, and kept for the history.
    void broadcast(const relay_unit& unit, const session* origin = nullptr);
    // The same for a unit a shared log numbered (serve --resume --backplane): `offset` is its
    // first message's offset there (0: numbered here).
    // With channels, `channel_offset` is its first message's offset in its channel there.
    void broadcast(const relay_unit& unit, const session* origin, std::uint64_t offset,
                   std::uint64_t channel_offset = 0);
    // --resume with a shared log: a unit of its past, kept for resuming clients only (a node
    // filling its history at start), and the log's epoch with the offset its next message
    // gets; with history_follows, the offset the history starts at, and the units of the
    // history follow, then the same epoch again without it (resume_room::set_epoch). Nothing
    // without --resume.
    void resume_history(const relay_unit& unit, std::uint64_t offset,
                        std::uint64_t channel_offset = 0);
    void resume_epoch(const std::string& epoch, std::uint64_t next, bool history_follows = false);
    // --channels: at start, after the history's units, the shared log's last offset of
    // `channel` ("": the floor of the channels it does not number). False when that is not a
    // channel name (the log is not trusted).
    bool resume_channel(std::string_view channel, std::uint64_t last);
    // --resume with a shared log: where a resuming client whose position is older than this
    // node's history gets the older part (docs/resume.md, "Several nodes"). The fetch reads
    // the log's units of `epoch` from the one holding offset `from` on (a bounded piece) and
    // calls `done` on the io thread; `failed`: the log could not say. Set before serving.
    struct history_piece {
        // A piece is about this many bytes, at most this many entries (whatever the backlog).
        static constexpr std::size_t max_bytes = 64 * 1024;
        static constexpr std::size_t max_entries = 256;
        std::vector<std::pair<std::uint64_t, relay_unit>> units;  // (first offset, unit)
        // --channels: each unit's first channel offset (parallel to `units`; 0: none given).
        std::vector<std::uint64_t> channel_offsets;
        // Past the last entry read, refused ones included (0: not said): the next read's start.
        std::uint64_t read_to = 0;
        bool failed = false;
    };
    using history_fetch_fn = std::function<void(const std::string& epoch, std::uint64_t from,
                                                 std::function<void(history_piece)> done)>;
    void set_history_fetch(history_fetch_fn fn);
    // Frames encoded elsewhere (a backplane entry), counted with the codec (relay_unit_of).
    relay_unit relay_unit_of(shared_frame framed) const;
    // The same for bytes nobody here vouches for (a backplane entry): a null unit, and why in
    // `problem`, unless they are whole frames within max_message and, in chat mode, relays
    // of one sender (name/message pairs, the same acceptable name in each). Thread-safe.
    relay_unit checked_unit(shared_frame framed, std::string& problem) const;

    // Where client-published and source messages enter, already encoded (a chat relay is the
    // sender's username frame and the message frame in one unit, carried as opaque bytes).
    // By default straight into broadcast(); a backplane can replace it and feed the hub back
    // through broadcast().
    using ingress_fn = std::function<void(const relay_unit& unit, const session* origin)>;
    void set_ingress(ingress_fn fn) { ingress_ = std::move(fn); }
    // Encodes `payload` once and publishes the frame.
    void publish(std::string_view payload, const session* origin = nullptr);
    void publish(const relay_unit& unit, const session* origin = nullptr);

    // Publish acks through a shared log (a node with a backplane, docs/resume.md "Several
    // nodes"): the log keeps each publisher's last number and drops repeats, across nodes.
    // A "@publish" request asks the log (`attach`) and is answered once the log's receipt
    // comes back; each unit a publisher sends carries its numbers (take_publisher_unit(), in
    // the ingress); a connection is acknowledged only up to what the log has confirmed.
    using publisher_attach_fn =
        std::function<void(std::uint64_t session, std::string publisher, std::uint64_t first)>;
    void set_publish_log(publisher_attach_fn attach);
    // The numbers of the unit `origin` is publishing now (in the ingress); none for a client
    // that did not ask for acks, or without set_publish_log().
    std::optional<backplane::publisher_unit> take_publisher_unit(const session* origin);
    // The log's answer for a session (gone: ignored).
    void publisher_receipt(const backplane::publisher_receipt& r);

    // A client's id: unique for the server's lifetime, never reused, never 0 (0 is "none", also
    // for a null session). find_session() maps it back in O(1); null once the client is gone.
    static std::uint64_t session_id(const session* s) noexcept;
    const session* find_session(std::uint64_t id) const noexcept;

    // Graceful stop: closes the listeners, lets every client's queue flush (at most
    // `drain_timeout`), then closes them. `done` runs once no client is left.
    void shutdown(std::chrono::milliseconds drain_timeout, std::function<void()> done = {});
    // Closes every client now.
    void close_all(const std::string& reason);

    // Backpressure (server_options::backpressure): true while the sources are held back: some
    // client's queue is over half of client_buffer (for no longer than `backpressure`) and
    // what fills it came from the sources, or from publishers that cannot be told apart (the
    // backplane). Publishing clients are held only while their own traffic fills a queue.
    bool congested() const noexcept;
    // Runs `fn` on the server's thread once congested() is false (posted, never inline).
    void when_ready(std::function<void()> fn);

    const server_counters& counters() const noexcept { return counters_; }
    const server_options& options() const noexcept { return opts_; }
    std::size_t client_count() const noexcept;
    // Bytes waiting in each client's outbound queue (for metrics), in no particular order.
    std::vector<std::size_t> client_queue_bytes() const;
    // Their sum, kept as queues change: O(1) (for /healthz).
    std::size_t queued_bytes_total() const noexcept;
    // The memory budget's account: bytes in use (server_options::memory_limit).
    std::size_t memory_used() const noexcept;
    // Channels with per-channel metrics: their counters (empty otherwise).
    std::vector<channel_metric> channel_metrics() const;
    // Resume: the stream's epoch, the next offset, what the history holds, and the resuming
    // clients (empty/zero without --resume).
    struct resume_state {
        std::string epoch;
        std::uint64_t next_offset = 0;
        std::uint64_t oldest_offset = 0;
        std::size_t history_messages = 0;
        std::size_t history_bytes = 0;
        std::size_t clients = 0;
        std::uint64_t max_lag = 0;  // messages the furthest-behind replaying client still lacks
    };
    resume_state resume_status() const;
    // Publish acks: the publishers remembered now, and those forgotten (zero without them).
    struct publish_state {
        std::size_t publishers = 0;
        std::uint64_t evicted = 0;  // to make room in a full table, before their expiry
        std::uint64_t expired = 0;  // idle longer than the expiry
    };
    publish_state publish_status() const;
    // Lets the budget count bytes another thread holds (the backplane's pending appends).
    void count_external_memory(const std::atomic<std::uint64_t>* bytes) noexcept;

private:
    struct impl;
    server_options opts_;
    server_counters counters_;
    ingress_fn ingress_;
    publisher_attach_fn publish_log_;
    std::unique_ptr<impl> impl_;
};

}  // namespace framecast::io
