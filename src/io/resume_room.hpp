// Resume (`serve --resume`, docs/resume.md): keeps the stream's history with offsets, answers
// a client's opt-in first frame "@resume ...", replays the backlog to it in bounded pieces as
// its queue drains, then delivers it the live stream, every piece prefixed by a position
// frame ("FIRST COUNT"). Clients that never ask see exactly what they saw before.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "framecast/io/server.hpp"
#include "hub.hpp"
#include "log_reads.hpp"
#include "member.hpp"
#include "resume_log.hpp"

namespace framecast::io {

// A random epoch: a server without a backplane loses its history when it stops, so every
// start is a new epoch (64 bits: two starts never share one).
std::string random_epoch();

// A client's place in the resumed stream, kept by its session.
struct resume_seat {
    bool replaying = false;  // the writer pulls the backlog from `cursor` as the queue drains
    bool live = false;       // caught up: receives each broadcast with its position
    std::uint64_t cursor = 0;  // the next offset to send while replaying
    bool waiting = false;    // replaying from an offset this node has not seen yet (shared log)
    // Replaying the shared log's past, older than this node's history (resume_room_fetch.cpp):
    bool fetching = false;   // a piece is being read for it
    bool queued = false;     // waiting for a free read (log_replays at once)
    std::uint64_t ticket = 0;  // of the read in flight
    // The answer waits for the first piece: only the log can say whether LAST+1 is still there.
    bool answer_pending = false;
    std::string nonce;
    std::uint64_t asked = 0;  // LAST+1
    // A request held until this node knows the shared log's epoch (its text).
    std::string held;
};

class resume_room {
public:
    resume_room(const server_options& opts, server_counters& counters, hub& h);

    // Whether a client's first frame is a resume request (starts with "@resume ").
    static bool is_request(std::string_view payload) noexcept;
    // Answers the request: the "@resumed" frame, then the replay (see pump()). A malformed
    // request is answered "@resume-error why" and the client closed once that is written.
    void request(member& m, resume_seat& seat, std::string_view payload);
    // A unit entering the hub: kept in the history, and delivered with its position to every
    // caught-up resuming client (the hub delivers it, as it is, to the others).
    // With a shared log (serve --resume --backplane), `offset` is the one the log gave the
    // unit's first message (0: number it here); a repeat is neither kept nor delivered.
    void broadcast(const relay_unit& unit, std::uint64_t offset = 0);
    // A unit of the shared log's past (a node filling its history at start): kept, not
    // delivered.
    void history(const relay_unit& unit, std::uint64_t offset);
    // The shared log's epoch, and the offset its next message gets: given once the backplane
    // knows them, and again whenever the log's history is lost (a deleted stream). A change
    // empties the history and closes the resuming clients: they resume again and are told.
    // Requests that arrived before the first call (a node started while Redis was down) wait
    // for it: this node's own epoch would tell them of a change that did not happen. With
    // history_follows, `next` is where the log's recent entries start; they come next
    // (history()), then the same epoch again without it, and requests wait until then: one
    // answered before would miss what it asked for, or be told of a gap that is not one.
    void set_epoch(const std::string& epoch, std::uint64_t next, bool history_follows = false);
    // The writer's turn for a replaying client: queues pieces of the backlog while its queue
    // is below replay_queue(); once nothing is left, the client is live. Single-threaded, so
    // no broadcast can fall between the last piece and going live.
    void pump(member& m, resume_seat& seat);
    // With a shared log: reads its past for clients older than this node's history.
    void set_fetch(server::history_fetch_fn fn) { fetch_ = std::move(fn); }
    // `m` is closing.
    void leave(member& m, resume_seat& seat);

    const std::string& epoch() const noexcept { return epoch_; }
    const resume_log& log() const noexcept { return log_; }
    // Resuming clients now (replaying or live), and how far behind the head the slowest
    // replaying one is (messages).
    std::size_t clients() const noexcept { return members_.size(); }
    // Requests waiting for the shared log's epoch and history.
    std::size_t held() const noexcept { return held_.size(); }
    std::uint64_t max_lag() const noexcept;

private:
    std::size_t replay_queue() const noexcept;
    shared_frame position_frame(std::uint64_t first, std::size_t count) const;
    void refuse(member& m, std::string_view why);
    void change_epoch(const std::string& epoch, std::uint64_t next, bool first);
    void answer(member& m, const std::string& nonce, std::uint64_t asked, std::uint64_t start);
    // resume_room_fetch.cpp: the shared log's past, for a client older than the history.
    bool needs_log(const resume_seat& seat) const noexcept;
    void fetch(member& m, resume_seat& seat);
    void fetched(std::uint64_t ticket, server::history_piece piece);
    void take(member& m, resume_seat& seat, const server::history_piece& piece);
    void forget_fetch(member& m, resume_seat& seat);
    void send_piece(member& m, resume_seat& seat, std::uint64_t first, std::size_t count,
                    std::string_view body);
    void deliver_live(const std::vector<member*>& live, const relay_unit& unit,
                      std::uint64_t first);

    const server_options& opts_;
    server_counters& counters_;
    hub& hub_;
    std::string epoch_;
    bool shared_epoch_ = false;  // epoch_ came from the shared log (set_epoch)
    bool loading_ = false;       // the log's recent entries are on their way (set_epoch)
    resume_log log_;
    // Every resuming client (replaying or live), with its seat, for lag and live delivery.
    std::unordered_map<member*, resume_seat*> members_;
    // Requests waiting for the shared log's epoch and history (set_epoch), in arrival order.
    std::vector<std::pair<member*, resume_seat*>> held_;
    // Reading the shared log's past: at most opts.resume.log_replays reads in flight (each one
    // piece), the clients waiting for one in order, and who each read is for.
    server::history_fetch_fn fetch_;
    log_reads reads_;
};

}  // namespace framecast::io
