#include "chat_room.hpp"

#include <spdlog/spdlog.h>

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
    if (opts_.chat.unique_names && names_.contains(std::string(name))) {
        why = close_reason::name_taken;
        return "username '" + escape_controls(name, true) + "' is already in use (unique names)";
    }
    return {};
}

bool chat_room::join(member& m, chat_seat& seat, std::string_view header, std::string_view name) {
    close_reason why{};
    if (auto problem = check_name(name, why); !problem.empty()) {
        m.close(why, problem);
        return false;
    }
    auto frame = std::make_shared<std::string>(header);
    frame->append(name);
    seat.user_frame = std::move(frame);
    ++counters_.chat_joins;
    spdlog::info("{} joined from {}", escape_controls(name, true), m.peer());
    // Replayed before it is a member of the room: a client the replay overflows leaves as a
    // client that never joined.
    for (const auto& relay : history_) {
        m.deliver(relay);
        if (m.closed()) return false;
    }
    m.name_ = name;
    if (opts_.chat.unique_names) ++names_[m.name_];
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
    if (opts_.chat.history > 0) remember(relay);
    hub_.broadcast(relay, origin);
}

void chat_room::remember(const relay_unit& relay) {
    history_.push_back(relay);
    history_bytes_ += relay.size();
    while (history_.size() > opts_.chat.history ||
           (history_bytes_ > opts_.client_buffer / 2 && history_.size() > 1)) {
        history_bytes_ -= history_.front().size();
        history_.pop_front();
    }
}

void chat_room::leave(const member& m) {
    if (!opts_.chat.unique_names || m.name().empty()) return;
    if (auto it = names_.find(m.name()); it != names_.end() && --it->second == 0) names_.erase(it);
}

}  // namespace framecast::io
