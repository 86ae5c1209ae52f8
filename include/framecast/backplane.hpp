// A backplane joins several framecast nodes into one stream: every message that enters a
// node's broadcast is appended to a shared log in an existing broker, and every node delivers
// every entry of that log to its local clients once, in the log's order. The interface knows
// nothing of Asio or of the server, so another engine (NATS, ...) can be added beside Redis.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace framecast::backplane {

// Publish acks with a backplane (docs/resume.md, "Publishing"): the shared log keeps each
// publisher's last accepted number, and appends a publisher's unit only past it, in the same
// atomic step; so a publisher deduplicated on one node is deduplicated on all of them.
// A unit of numbered messages from one publisher connection.
struct publisher_unit {
    std::string publisher;   // the subject-scoped publisher id (the node's publisher table key)
    std::uint64_t first = 0;  // the unit stands for numbers first..last; its messages are the
    std::uint64_t last = 0;   // last `messages` of them (those before were refused by the node)
    std::vector<std::uint64_t> ends;  // where each message ends in the framed bytes
};

// The log's answers about publishers, for the node (on the backplane's thread: post them).
struct publisher_receipt {
    enum class kind {
        attached,  // attach_publisher(): the log has the publisher's messages up to `last`
        handled,   // publish_numbered(): the unit's messages up to `last` are in the log
                   // (`duplicates` of them were there already and were not appended again)
        failed,    // publish_numbered(): not appended (`why`): the connection must start again
    };
    kind what = kind::handled;
    std::uint64_t origin_client = 0;
    std::uint64_t last = 0;
    std::uint64_t messages = 0;    // handled: the unit's messages
    std::uint64_t duplicates = 0;
    bool entry = false;  // handled: an entry was appended (it comes back through deliver)
    std::string why;
};

// One entry of the shared log.
struct message {
    std::shared_ptr<const std::string> framed;  // one or more whole frames, sent to clients as is
    std::string origin_node;                    // the node that published it
    std::uint64_t origin_client = 0;            // that node's client id (0: none), so the origin
                                                // can skip the sender where the mode wants that
    // With options::offsets (serve --resume): what this is, and where it stands in the log.
    enum class kind {
        live,     // a new entry: broadcast it
        history,  // an entry of the log's past, read at start: keep it for resuming clients
        epoch,    // no entry: the log's epoch is `epoch` (known at last, or changed because
                  // the log's history was lost), and `offset` is where its next entry starts
                  // (or, with history_follows, where the kind::history entries start)
        channel,  // options::channel_header, at start, after the kind::history entries: the
                  // log numbers `channel` and its last offset is `offset` (as of the last
                  // entry read); "" names the floor (a channel the log does not number
                  // starts above it). Not checked: the reader checks the name.
    };
    kind what = kind::live;
    std::uint64_t offset = 0;  // the log's offset of the entry's first message (0: no offsets)
    // options::channel_header: that message's offset in its channel (live, history entries)
    std::uint64_t channel_offset = 0;
    std::string epoch;         // kind::epoch only
    std::string channel;       // kind::channel only
    // kind::epoch only: the log's recent entries follow (kind::history), then the same epoch
    // again without this (offset 0): only then does the node hold all it read at start.
    bool history_follows = false;
};

struct stats {
    std::uint64_t published = 0;        // appended to the log
    std::uint64_t delivered = 0;        // entries handed to deliver()
    std::uint64_t pending = 0;          // waiting to be appended (engine unreachable or busy)
    std::uint64_t dropped = 0;          // not appended: the pending queue was full, Redis
                                        // refused it for good, or the drain deadline passed
    std::uint64_t duplicates = 0;       // entries seen twice (a retried append) and skipped
    std::uint64_t rejected = 0;         // entries refused: malformed (counted by the reader of
                                        // the entries, see backplane::reject)
    std::uint64_t sequence_jumps = 0;   // a node's sequence number skipped ahead (delivered,
                                        // logged; never used to drop that node's later entries)
    std::uint64_t retried = 0;          // appends Redis answered "not yet" (LOADING after a
                                        // restart, BUSY): kept pending and sent again
    std::uint64_t reconnects = 0;       // connections re-established after a loss
    std::uint64_t epoch_changes = 0;    // options::offsets: the log's history was lost (a
                                        // deleted stream, a Redis without persistence)
    std::uint64_t history_loaded = 0;   // options::offsets: entries read at start (kind::history)
    std::uint64_t publisher_duplicates = 0;  // publish acks: messages the log already had
    bool connected = false;             // both directions up
    double lag_seconds = 0;             // age of the newest entry delivered, when delivered
};

struct options {
    std::uint64_t retention = 100'000;      // entries the log keeps (approximately; MAXLEN ~)
    // and their bytes at most (approximately: MAXLEN from the entries' average size)
    std::uint64_t retention_bytes = 128ull << 20;
    std::size_t pending_limit = 100'000;    // messages held while the engine is unreachable
    std::uint64_t pending_bytes_limit = 256ull << 20;  // and their bytes at most
    double block_seconds = 0.25;            // longest a read waits, so stop() is prompt
    double max_backoff_seconds = 5.0;       // reconnect delay ceiling (io::backoff)
    double start_timeout_seconds = 3.0;     // how long start() waits for the engine
    // serve --resume: the log numbers messages (offsets, the same on every node) and names its
    // history (an epoch that changes when the history is lost); entries arrive with them, and
    // start() first delivers the log's most recent entries (kind::history), up to this many
    // messages' worth of entries or bytes, for resuming clients.
    bool offsets = false;
    std::uint64_t history_messages = 100'000;
    std::uint64_t history_bytes = 64ull << 20;
    // serve --channels --resume: every channel numbers its own messages too, in the log (the
    // same on every node): an entry begins with its channel's frame, whose header has this
    // many bytes (0: no channels), and gets message::channel_offset. The log forgets the
    // longest unused channels past max_channels (a forgotten channel starts again above
    // every offset it had: none is reused within an epoch).
    std::size_t channel_header = 0;
    std::uint64_t max_channels = 100'000;
    // Publish acks: the log forgets a publisher unused this long (ms), or the longest unused
    // ones beyond max_publishers.
    std::uint64_t publisher_expiry_ms = 600'000;
    std::uint64_t max_publishers = 10'000;
};

// A piece of the log's past (read_history): entries as message::kind::history, oldest first.
struct history_range {
    std::vector<message> entries;
    bool failed = false;  // the engine could not say (unreachable, refused): `why`
    std::string why;
};

class backplane {
public:
    // Called for every entry, in log order, on the backplane's own thread: post it to your
    // executor. Includes this node's own messages (all nodes see one order).
    using deliver_fn = std::function<void(message)>;

    virtual ~backplane() = default;
    // Starts reading from the log's current end, and appending. Returns once the reading
    // position is known (so what is published afterwards reaches this node), or after
    // options::start_timeout_seconds if the engine is unreachable (it keeps trying).
    // With options::offsets, throws std::runtime_error when the log cannot be numbered (a
    // Redis stream written without offsets): say so and stop rather than serve wrong offsets.
    virtual void start(deliver_fn deliver) = 0;
    // Queues `framed` for appending; never blocks. Held while the engine is unreachable, up to
    // options::pending_limit messages and pending_bytes_limit bytes, beyond which it is dropped
    // (logged, counted).
    // `messages`: how many messages `framed` holds (with options::offsets, the offsets it takes).
    virtual void publish(std::shared_ptr<const std::string> framed, std::uint64_t origin_client,
                         std::size_t messages = 1) = 0;
    // Publish acks (publisher_unit): where the log's answers go; set before start().
    using receipt_fn = std::function<void(publisher_receipt)>;
    virtual void set_receipts(receipt_fn fn) = 0;
    // Asks the log for `publisher`'s last number (raised to first - 1: the client holds
    // nothing before `first`): answered by a kind::attached receipt, in order with the appends.
    virtual void attach_publisher(std::uint64_t origin_client, std::string publisher,
                                  std::uint64_t first) = 0;
    // As publish(), for a publisher's numbered messages: appended only past the publisher's
    // last number in the log, answered by a receipt. False (nothing queued, no receipt) when
    // the pending queue is full.
    virtual bool publish_numbered(std::shared_ptr<const std::string> framed,
                                  std::uint64_t origin_client, std::size_t messages,
                                  publisher_unit unit) = 0;
    // Appends what is pending (for at most `drain_seconds`) and stops both directions.
    virtual void stop(double drain_seconds = 2.0) = 0;
    virtual stats snapshot() const = 0;
    // An entry its reader refused (not whole frames, ...): counted in stats::rejected.
    virtual void reject() = 0;
    // Bytes pending append, kept as they change (for the server's memory budget); thread-safe.
    virtual const std::atomic<std::uint64_t>* pending_bytes_counter() const = 0;
    virtual const std::string& node_id() const = 0;
    // options::offsets (serve --resume): reads a piece of the log's past for a resuming client
    // whose position the node no longer holds: the entries of `epoch` from the one holding
    // offset `from` on (or from the oldest kept, when the log no longer has `from`), at most
    // `max_entries` and about `max_bytes` (at least one entry). Never blocks: `done` is called
    // on a thread of the backplane's own, in the order asked (not at all once stop() began).
    // Without a replay reader (another engine) it answers failed at once.
    virtual void read_history(const std::string& epoch, std::uint64_t from,
                              std::size_t max_entries, std::size_t max_bytes,
                              std::function<void(history_range)> done) {
        (void)epoch, (void)from, (void)max_entries, (void)max_bytes;
        done({.entries = {}, .failed = true, .why = "not supported by this backplane"});
    }
    virtual std::string describe() const = 0;  // e.g. "redis://127.0.0.1:6379/framecast"
};

// Makes a backplane from a URL. Supported: redis://[USER:PASSWORD@|PASSWORD@]HOST:PORT/KEY (a
// Redis Stream at KEY; PORT defaults to 6379, KEY to "framecast"; with a password, AUTH on
// every connection). Throws std::invalid_argument naming what is wrong.
std::unique_ptr<backplane> make_backplane(const std::string& url, options opts = {});

}  // namespace framecast::backplane
