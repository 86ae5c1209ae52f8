#include "chat_room.hpp"

#include <spdlog/spdlog.h>

#include "names.hpp"

namespace framecast::io {

chat_room::chat_room(const server_options& opts, server_counters& counters, hub& h)
    : opts_(opts), counters_(counters), hub_(h) {}

std::string chat_room::check_name(std::string_view name, close_reason& why) const {
    why = close_reason::bad_username;
    if (name.empty()) return "empty";
    if (!count_code_points(name)) return "not valid UTF-8: " + escape_bytes(name);
    if (name.size() > opts_.chat.max_name) {
        return std::to_string(name.size()) + " bytes, more than " +
               std::to_string(opts_.chat.max_name) + " (max name)";
    }
    if (auto problem = name_problem(name); !problem.empty()) {
        return "username '" + escape_controls(name, true) + "' " + problem;
    }
    if (opts_.chat.unique_names) {
        if (auto it = names_.find(name_skeleton(name)); it != names_.end()) {
            why = close_reason::name_taken;
            if (it->second.name == name) {
                return "username '" + escape_controls(name, true) +
                       "' is already in use (unique names)";
            }
            return "username '" + escape_controls(name, true) + "' looks like '" +
                   escape_controls(it->second.name, true) + "', a name in use (unique names)";
        }
    }
    return {};
}

bool chat_room::join(member& m, chat_seat& seat, std::string_view header, std::string_view name) {
    close_reason why{};
    if (auto problem = check_name(name, why); !problem.empty()) {
        m.close(why, problem);
        return false;
    }
    // With --auth the username is the token's subject (or the certificate's identity):
    // nobody claims another's name.
    if (!m.subject().empty() && name != m.subject()) {
        const bool cert = opts_.auth.cert;
        m.close(close_reason::bad_username,
                "username '" + escape_controls(name, true) + "' is not the " +
                    (cert ? "certificate's identity '" : "token's subject '") +
                    escape_controls(m.subject(), true) + "' (with --auth, a chat name is the " +
                    (cert ? "client certificate's identity)" : "token's sub)"));
        return false;
    }
    auto frame = std::make_shared<std::string>(header);
    frame->append(name);
    seat.user_frame = std::move(frame);
    ++counters_.chat_joins;
    spdlog::info("{} joined from {}", escape_controls(name, true), m.peer());
    // Replayed before it is a member of the room: a client the replay overflows leaves as a
    // client that never joined.
    if (!history_.empty()) {
        m.deliver(replay());
        if (m.closed()) return false;
    }
    m.name_ = name;
    if (opts_.chat.unique_names) {
        auto& in_use = names_[name_skeleton(name)];
        if (in_use.count++ == 0) in_use.name = m.name_;
    }
    seat.joined = true;
    m.receives_ = true;
    return true;
}

relay_unit chat_room::relay_of(const chat_seat& seat, std::string_view header,
                               std::string_view payload) const {
    relay_unit_builder b(opts_.codec);
    b.append_encoded(*seat.user_frame, header, payload);
    return b.take();
}

void chat_room::broadcast(const relay_unit& relay, const member* origin) {
    if (opts_.chat.history > 0) {
        if (relay.messages <= 1) {
            remember(relay);
        } else {
            // A batch (one read's relays): kept per message, so the history holds exactly
            // the last `history` messages.
            for (auto& one : split_relays(relay)) remember(one);
        }
    }
    hub_.broadcast(relay, origin);
}

std::vector<relay_unit> chat_room::split_relays(const relay_unit& relay) const {
    std::vector<relay_unit> out;
    decoder dec(opts_.codec, decode_mode::whole);
    std::span<const char> in(relay.bytes->data(), relay.bytes->size());
    const char* start = in.data();
    std::size_t frames = 0;
    while (dec.next(in) == decode_event::frame) {
        if (++frames % 2 != 0) continue;
        out.push_back({std::make_shared<const std::string>(start, in.data()), 1});
        out.back() = hub_.budget().track(out.back());
        start = in.data();
    }
    return out;
}

// Whole units are kept (a unit holds the relays of one read): the history may hold a few
// messages more than asked, never fewer.
void chat_room::remember(const relay_unit& relay) {
    history_.push_back(relay);
    history_bytes_ += relay.size();
    history_messages_ += relay.messages;
    replay_ = {};
    while (history_.size() > 1 &&
           (history_messages_ - history_.front().messages >= opts_.chat.history ||
            history_bytes_ > opts_.client_buffer / 2)) {
        history_bytes_ -= history_.front().size();
        history_messages_ -= history_.front().messages;
        history_.pop_front();
    }
}

const relay_unit& chat_room::replay() {
    if (replay_) return replay_;
    auto bytes = std::make_shared<std::string>();
    bytes->reserve(history_bytes_);
    for (const auto& r : history_) bytes->append(*r.bytes);
    replay_ = hub_.budget().track({std::move(bytes), history_messages_});
    return replay_;
}

void chat_room::leave(const member& m) {
    if (!opts_.chat.unique_names || m.name().empty()) return;
    if (auto it = names_.find(name_skeleton(m.name())); it != names_.end() && --it->second.count == 0) {
        names_.erase(it);
    }
}

}  // namespace framecast::io
