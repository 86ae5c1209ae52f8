// The tutorial's chat room: a client's first frame is its username (rules: non-empty, valid
// UTF-8, at most max_name bytes, unique when asked), every later frame a message relayed to the
// others as the username frame followed by the message frame, both exactly as received. Keeps
// the last relays for newcomers. Reaches clients only through the member interface.
#pragma once

#include <array>
#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "framecast/io/server.hpp"
#include "hub.hpp"
#include "member.hpp"

namespace framecast::io {

// A client's place in the room, kept by its session.
struct chat_seat {
    shared_frame user_frame;  // the username frame, header and name exactly as received
    bool joined = false;
};

class chat_room {
public:
    chat_room(const server_options& opts, server_counters& counters, hub& h);

    // The first frame: checks the name, registers it, replays the history. False when `m`
    // was closed for it (the reason says why).
    bool join(member& m, chat_seat& seat, std::string_view header, std::string_view name);
    // A joined member's message, as the relay unit to publish.
    relay_unit relay_of(const chat_seat& seat, std::string_view header,
                        std::string_view payload) const;
    // A relay entering the hub: kept for newcomers, delivered to every joined member.
    void broadcast(const relay_unit& relay, const member* origin);
    // `m` is closing: frees its name.
    void leave(const member& m);

private:
    // Empty when the name is acceptable; otherwise why not, and the reason to close with.
    std::string check_name(std::string_view name, close_reason& why) const;
    void remember(const relay_unit& relay);
    const relay_unit& replay();
    std::vector<relay_unit> split_relays(const relay_unit& relay) const;

    const server_options& opts_;
    server_counters& counters_;
    hub& hub_;
    // Names in use (unique names only), by confusable skeleton: how many, and the first.
    struct name_in_use {
        std::size_t count = 0;
        std::string name;
    };
    std::unordered_map<std::string, name_in_use> names_;
    std::deque<relay_unit> history_;
    std::size_t history_bytes_ = 0;
    std::size_t history_messages_ = 0;
    // The history as one unit, what every newcomer is sent: built on the first join after the
    // history changed, then shared by every join (one queue entry each, no copy).
    relay_unit replay_;
};

}  // namespace framecast::io
