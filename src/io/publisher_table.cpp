#include "publisher_table.hpp"

#include "framecast/io/protocol_words.hpp"

#include <algorithm>
#include <charconv>

namespace framecast::io {

namespace {

constexpr std::string_view publish_verb = "@publish ";

}  // namespace

bool publisher_table::is_request(std::string_view payload) noexcept {
    return payload.starts_with(publish_verb);
}

std::string publisher_table::parse(std::string_view payload, request& out) {
    std::string_view rest = payload.substr(publish_verb.size());
    std::string_view w[4];
    std::size_t n = 0;
    while (n < 4) {
        const auto sp = rest.find(' ');
        w[n++] = rest.substr(0, sp);
        if (sp == std::string_view::npos) {
            rest = {};
            break;
        }
        rest.remove_prefix(sp + 1);
    }
    if (!rest.empty() || n < 2 || n > 3 || !is_protocol_token(w[0]) || !is_protocol_token(w[1])) {
        return "expected '@publish NONCE PUBLISHER [FIRST]' (NONCE, PUBLISHER: 1-64 of "
               "[A-Za-z0-9_-]; FIRST: a decimal sequence number, at least 1)";
    }
    out = {w[0], w[1], 1};
    if (n == 3 && (!parse_protocol_u64(w[2], out.first) || out.first == 0)) {
        return "FIRST must be a decimal sequence number, at least 1";
    }
    return {};
}

void publisher_table::forget(entry& e) {
    if (e.connections == 0) idle_.erase(e.idle_pos);
    // By iterator: erasing by a key that lives in the node being erased is not safe.
    if (auto it = entries_.find(e.id); it != entries_.end()) entries_.erase(it);
}

void publisher_table::expire(clock::time_point now) {
    while (!idle_.empty() && now - idle_.front()->idle_since >= limits_.expiry) {
        ++expired_;
        forget(*idle_.front());
    }
}

publisher_table::entry* publisher_table::attach(std::string_view publisher, std::uint64_t first,
                                                clock::time_point now) {
    expire(now);
    std::string id(publisher);
    auto it = entries_.find(id);
    if (it == entries_.end()) {
        if (limits_.max_publishers == 0) return nullptr;
        if (entries_.size() >= limits_.max_publishers) {
            // Full: the longest idle publisher makes room; when all are connected, none can.
            if (idle_.empty()) return nullptr;
            ++evicted_;
            forget(*idle_.front());
        }
        it = entries_.try_emplace(id).first;
        it->second.id = std::move(id);
    } else if (it->second.connections == 0) {
        idle_.erase(it->second.idle_pos);
    }
    entry& e = it->second;
    ++e.connections;
    e.last = std::max(e.last, first - 1);
    return &e;
}

void publisher_table::detach(entry& e, clock::time_point now) {
    if (e.connections == 0 || --e.connections > 0) return;
    e.idle_since = now;
    e.idle_pos = idle_.insert(idle_.end(), &e);
    expire(now);
}

bool publisher_table::accept(entry& e, std::uint64_t seq) noexcept {
    if (seq <= e.last) return false;
    e.last = seq;
    return true;
}

}  // namespace framecast::io
