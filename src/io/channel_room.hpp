// Channels (`serve --channels`): clients subscribe to patterns and publish to channels, all in
// the tutorial's frames. The room parses a client's command frames, keeps the subscriptions in
// a subscription_trie, and delivers each published unit (channel frame + payload frame, built
// once per publish and shared by every receiver) to the members whose patterns match, through
// the hub's deliver path (slow consumer, backpressure and byte bounds apply as everywhere).
// Answers and errors go to the one client as notices on the reserved `$sys.` channels.
// Reaches clients only through the member interface. docs/channels.md is the specification.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "auth.hpp"
#include "channel_history.hpp"
#include "channel_protocol.hpp"
#include "framecast/io/server.hpp"
#include "hub.hpp"
#include "log_reads.hpp"
#include "member.hpp"
#include "subscription_trie.hpp"

namespace framecast::io {

// A client's part of the room, kept by its session.
struct channel_seat {
    std::vector<std::string> patterns;   // held, in subscription order
    // After `PUB channel`: the next frame is its payload. A refused PUB still takes its
    // payload frame (and drops it), so the stream stays in sync.
    bool expect_payload = false;
    bool drop_payload = false;
    // The channel frame (header + name) of the last accepted PUB: shared by consecutive
    // publishes to the same channel, which therefore travel in one unit.
    shared_frame channel_frame;
    shared_frame batch_frame;  // the channel of the unit the session is building
    // Whether anyone but the publisher receives channel_frame's channel, as of the trie's
    // generation `heard_generation` (0: not known).
    bool heard = true;
    std::uint64_t heard_generation = 0;
    // Resume (serve --channels --resume): once the client sent RESUME, every delivery comes
    // after a position pair; the channels it is catching up on, each with the next offset to
    // send (their live messages wait in the history until the replay reaches them).
    bool positioned = false;
    std::map<std::string, std::uint64_t, std::less<>> replaying;
    // After "RESUME *": position pairs carry a 4th word (the process-wide sequence), and each
    // SUB replays the matching channels the client holds no position in from after `after`
    // (`after_epoch`: the client's sequence was of another epoch). `known`: the channels it
    // resumed by name or was given by a SUB on this connection (never replayed twice).
    bool sequenced = false;
    bool after_epoch = false;
    std::uint64_t after = 0;
    std::set<std::string, std::less<>> known;
    // With a shared log: a RESUME held until the node holds the log's epoch and history (its
    // text); the session reads nothing more from the client meanwhile.
    bool held = false;
    std::string held_text;
    // With a shared log: channels replayed from the log itself (older than this node's
    // window), each with the log offset to read from next (channel_fetch.cpp); one read in
    // flight per client (`fetching`, for `fetch_channel`), or waiting for a free one.
    std::map<std::string, std::uint64_t, std::less<>> from_log;
    bool fetching = false;
    bool queued = false;
    std::uint64_t ticket = 0;
    std::string fetch_channel;
};

// The channel a published unit is for: its first frame (a view into `dec`'s buffer or the
// unit). Empty if the unit holds no frame.
std::string_view channel_of(const relay_unit& unit, decoder& dec);

class channel_room {
public:
    channel_room(const server_options& opts, server_counters& counters, hub& h);
    ~channel_room();

    // A command frame from `m` (not a payload): SUB, UNSUB or PUB. Errors become notices;
    // false only when `m` was closed meanwhile (e.g. its queue overflowed with notices).
    bool command(member& m, channel_seat& seat, std::string_view frame);
    // A published unit entering the room (from this node or the backplane): one or more
    // (channel frame, payload frame) pairs, all for the channel of the first. With a shared
    // log (use_shared_log), `offset` and `channel_offset` are the numbers the log gave its
    // first message; a repeat is neither kept nor delivered.
    void broadcast(const relay_unit& unit, const member* origin, std::uint64_t offset = 0,
                   std::uint64_t channel_offset = 0);

    // Resume with a shared log (serve --channels --resume --backplane, docs/resume.md,
    // "Channels"): the log numbers the messages (the same offsets on every node) and names the
    // epoch. Until the log's epoch and recent entries are here, RESUME waits (held).
    // `fetch` reads the log's past for a client older than this node's window.
    void use_shared_log(server::history_fetch_fn fetch);
    // As resume_room::set_epoch: the log's epoch, and where its history (history_follows) or
    // its next entry starts. A change empties the history and closes the clients with
    // positions: they resume again and are told.
    void set_epoch(const std::string& epoch, std::uint64_t next, bool history_follows);
    // A unit of the log's past (a node filling its history at start): kept, not delivered.
    void history(const relay_unit& unit, std::uint64_t offset, std::uint64_t channel_offset);
    // At start, after history(): the log's last offset of `channel` ("": the floor); false
    // (nothing kept) when `channel` is not a channel name.
    bool known(std::string_view channel, std::uint64_t last);
    std::size_t held() const noexcept { return held_.size(); }
    // True when the payload of `m`'s current PUB would reach nobody on this node: no other
    // member's pattern matches its channel. Cached in the seat until the subscriptions change,
    // so a stream of publishes nobody hears costs no unit, no match and no copy each.
    bool unheard(const member& m, channel_seat& seat);
    // Counts `n` publishes to the seat's channel that reached nobody (as broadcast would).
    void count_unheard(const channel_seat& seat, std::uint64_t n);
    // `m` is closing: drops its subscriptions.
    void leave(const member& m, channel_seat& seat);

    // Resume: the writer's turn for a client catching up on channels (seat.replaying): queues
    // pieces of their histories while its queue is short; a channel whose history is all sent
    // goes live. Single-threaded, so no broadcast falls between the last piece and live.
    void pump(member& m, channel_seat& seat);
    // Resume: the history (null without --resume), its epoch, clients that sent RESUME.
    const channel_history* history() const noexcept { return history_.get(); }
    const std::string& epoch() const noexcept { return epoch_; }
    std::size_t positioned_clients() const noexcept { return positioned_.size(); }
    // Messages the furthest-behind replaying client still lacks, in one channel.
    std::uint64_t max_lag() const;

    const subscription_trie& trie() const noexcept { return trie_; }
    // Per-channel counters (server_options::channel_options::metrics_channels).
    std::vector<channel_metric> metrics() const;

private:
    void subscribe(member& m, channel_seat& seat, std::string_view pattern, std::string_view frame);
    void unsubscribe(member& m, channel_seat& seat, std::string_view pattern,
                     std::string_view frame);
    void publish(member& m, channel_seat& seat, std::string_view channel);
    void start_history();
    void resume(member& m, channel_seat& seat, std::string_view arg);
    // "RESUME *" and "RESUME * EPOCH SEQ".
    void resume_all(member& m, channel_seat& seat, std::string_view epoch,
                    const std::uint64_t* last);
    // After "RESUME *", a SUB of `pattern`: the matching channels the client has no position
    // in on this connection are replayed from after its sequence.
    void catch_up(member& m, channel_seat& seat, std::string_view pattern);
    // A unit with the position pair ($sys.pos "CHANNEL FIRST COUNT", and " SEQ" for a client
    // that sent "RESUME *") in front of `body`.
    relay_unit positioned(std::string_view channel, std::uint64_t first, std::size_t count,
                          std::string_view body, std::uint64_t origin, bool sequenced) const;
    std::uint64_t deliver_all(const relay_unit& unit, std::string_view channel,
                              std::uint64_t first, const member* origin);
    bool repeats_last_pub(const channel_seat& seat, std::string_view frame) const;
    // The channel of the seat's last accepted PUB (its frame without the header); the seat
    // must have one.
    std::string_view seat_channel(const channel_seat& seat) const noexcept {
        return std::string_view(*seat.channel_frame).substr(opts_.codec.header_size);
    }
    void notify(member& m, std::string_view channel, std::string_view text);
    void refresh(member& m, std::string_view token);
    void fail(member& m, channel_error e, std::string_view detail);
    bool may_subscribe(member& m, std::string_view verb, std::string_view name, bool pattern);

    const server_options& opts_;
    server_counters& counters_;
    hub& hub_;
    subscription_trie trie_;
    // Where a client's permissions come from, for refusal notices.
    const char* grantor() const noexcept {
        return opts_.auth.cert ? "certificate identity (the [permissions] table)" : "token";
    }
    std::unique_ptr<jwt_verifier> auth_;  // AUTH refreshes (--auth)
    // Resume (--resume): per-channel offsets and histories, and the clients with positions.
    std::unique_ptr<channel_history> history_;
    std::string epoch_;
    std::unordered_map<const member*, channel_seat*> positioned_;
    // With a shared log: the epoch is the log's, RESUMEs wait while it loads (held_), and a
    // client whose position is ahead of this node (it came from a node further on in the log)
    // waits for the log to get there (waiting_: pumped as entries arrive).
    bool shared_ = false;
    bool loading_ = false;
    std::vector<std::pair<member*, channel_seat*>> held_;
    // By channel: pumped when that channel's entries arrive (cost per entry: its own waiters).
    std::unordered_multimap<std::string, std::pair<member*, channel_seat*>> waiting_;
    void release_held();
    bool waits_for_log(std::string_view channel, std::uint64_t cursor) const;
    void wait_for_log(member& m, channel_seat& seat, std::string_view channel);
    void pump_waiting(std::string_view channel);
    void forget_waiting(const member& m, const channel_seat& seat);
    // channel_fetch.cpp: the log's past, for a client older than this node's window.
    server::history_fetch_fn fetch_;
    log_reads reads_;
    void fetch(member& m, channel_seat& seat, const std::string& channel, std::uint64_t from);
    void fetched(std::uint64_t ticket, server::history_piece piece);
    void take_from_log(member& m, channel_seat& seat, const server::history_piece& piece);
    void forget_fetch(member& m, channel_seat& seat);
    // Per-channel counters: bounded to metrics_channels entries, then "_other".
    struct counts {
        std::uint64_t published = 0, deliveries = 0;
    };
    counts& counts_of(std::string_view channel);
    std::map<std::string, counts, std::less<>> per_channel_;
    counts other_;
};

}  // namespace framecast::io
