#include "sub_resume.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "framecast/io/json.hpp"
#include "framecast/io/protocol_words.hpp"
#include "offset_file.hpp"

namespace framecast::app {

using io::parse_protocol_u64;

namespace {

std::string json_string(std::string_view s) {
    std::string out;
    io::append_json_string(out, s);
    return out;
}

}  // namespace

channel_positions::channel_positions(bool no_gap, std::string offset_file, std::string peer,
                                     std::function<void(const std::string&)> event,
                                     std::function<void()> flush)
    : no_gap_(no_gap), offset_file_(std::move(offset_file)), peer_(std::move(peer)),
      event_(std::move(event)), flush_(std::move(flush)) {}

bool channel_positions::load(std::string& error) {
    if (offset_file_.empty()) return true;
    std::ifstream in(offset_file_);
    if (!in) return true;  // not there yet: no positions
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        const auto w = io::protocol_words(line);
        std::uint64_t last = 0;
        if (w.size() != 3 || !io::is_protocol_token(w[0]) || !parse_protocol_u64(w[1], last) ||
            w[2].empty()) {
            error = "--offset-file " + offset_file_ +
                    ": expected lines 'EPOCH LAST CHANNEL' (as written by sub --resume)";
            return false;
        }
        // "*": the process-wide sequence (RESUME *), not a channel (no channel is named '*').
        if (w[2] == "*") {
            global_ = {std::string(w[0]), last};
        } else {
            positions_[std::string(w[2])] = {std::string(w[0]), last};
        }
    }
    return true;
}

std::string channel_positions::commands(const codec_options& codec) {
    std::string out;
    current_.clear();
    remaining_ = 0;
    append_frame(out, "RESUME", codec);
    for (const auto& [channel, p] : positions_) {
        append_frame(out, fmt::format("RESUME {} {} {}", channel, p.epoch, p.last), codec);
    }
    // Last, so that the channels named above are not replayed twice.
    append_frame(out,
                 global_.epoch.empty() ? std::string("RESUME *")
                                       : fmt::format("RESUME * {} {}", global_.epoch, global_.last),
                 codec);
    return out;
}

channel_positions::kind channel_positions::on_pair(std::string_view channel,
                                                   std::string_view payload,
                                                   std::uint64_t& offset) {
    offset = 0;
    if (remaining_ > 0) {
        if (channel != current_) {
            return fail(exit_code::failure,
                        fmt::format("{}: a position pair announced '{}', the delivery is on "
                                    "'{}' (protocol error)", peer_, current_, channel));
        }
        offset = expected_++;
        --remaining_;
        positions_[current_] = {epoch_, offset};
        // The pair's sequence holds once all its deliveries are in.
        if (remaining_ == 0 && pair_seq_ > 0) global_ = {epoch_, pair_seq_};
        dirty_ = true;
        return kind::delivery;
    }
    if (channel == "$sys.pos") return on_position(payload);
    if (channel == "$sys.resumed") return on_resumed(payload);
    if (channel == "$sys.ok" && payload.starts_with("RESUME ")) {
        epoch_ = std::string(payload.substr(7));
        return kind::consumed;
    }
    return kind::delivery;  // notices and (from a server without positions) deliveries
}

channel_positions::kind channel_positions::on_resumed(std::string_view payload) {
    const auto w = io::protocol_words(payload);
    std::uint64_t next = 0;
    if (w.size() < 4 || !parse_protocol_u64(w[2], next) || next == 0) {
        return fail(exit_code::failure, fmt::format("{}: a resume answer this client does not "
                                                    "understand: '{}'", peer_, payload));
    }
    const std::string channel(w[0]);
    const std::string_view status = w[3];
    if (channel == "*") return on_resumed_all(w[1], next, status, w.size() == 5 ? w[4] : "");
    const auto known = positions_.find(channel);
    const position before = known == positions_.end() ? position{} : known->second;
    std::uint64_t lost_count = 0;
    if (status == "epoch" && before.epoch.empty()) {
        // A channel this client had no position in (RESUME *): the "*" answer told the change.
        spdlog::debug("{}: resumed {} at offset {} (new epoch)", peer_, channel, next);
    } else if (status == "epoch") {
        event_(fmt::format(R"({{"event":"epoch","channel":"{}","old":"{}","new":"{}","next":{}}})",
                           json_string(channel), before.epoch, w[1], next));
        const std::string text = fmt::format(
            "{}: resume {}: the server's history changed (epoch {} is gone, now {}): messages "
            "after offset {} of the old epoch may be lost; continuing at offset {}",
            peer_, channel, before.epoch, w[1], before.last, next);
        if (no_gap_) return fail(exit_code::gap, text + " (--no-gap)");
        spdlog::warn("{}", text);
    } else if (status == "gap") {
        if (w.size() != 5 || !parse_protocol_u64(w[4], lost_count) || lost_count == 0 ||
            lost_count >= next) {
            return fail(exit_code::failure, fmt::format("{}: a resume answer this client does "
                                                        "not understand: '{}'", peer_, payload));
        }
        if (!lost(channel, next - lost_count, next - 1, "outside the server's window")) {
            return kind::stop;
        }
    } else {
        spdlog::debug("{}: resumed {} at offset {} ({})", peer_, channel, next, status);
    }
    // The position moves to NEXT-1 only once a loss is accepted (--no-gap keeps the old one).
    positions_[channel] = {std::string(w[1]), next - 1};
    dirty_ = true;
    return kind::consumed;
}

// The answer to "RESUME *": NEXT is where channels this client has no position in start.
channel_positions::kind channel_positions::on_resumed_all(std::string_view epoch,
                                                         std::uint64_t next,
                                                         std::string_view status,
                                                         std::string_view lost_word) {
    std::uint64_t lost_count = 0;
    if (status == "epoch" && !global_.epoch.empty()) {
        event_(fmt::format(R"({{"event":"epoch","channel":"*","old":"{}","new":"{}","next":{}}})",
                           global_.epoch, epoch, next));
        const std::string text = fmt::format(
            "{}: resume: the server's history changed (epoch {} is gone, now {}): messages of "
            "channels this client had no position in may be lost",
            peer_, global_.epoch, epoch);
        if (no_gap_) return fail(exit_code::gap, text + " (--no-gap)");
        spdlog::warn("{}", text);
    } else if (status == "gap") {
        if (!parse_protocol_u64(lost_word, lost_count) || lost_count == 0) {
            return fail(exit_code::failure, fmt::format("{}: a resume answer this client does "
                                                        "not understand: '* {} {} gap {}'",
                                                        peer_, epoch, next, lost_word));
        }
        if (!lost("*", next, next + lost_count - 1,
                  "at most that many, of channels the server forgot (idle) since")) {
            return kind::stop;
        }
    }
    global_ = {std::string(epoch), next - 1};
    dirty_ = true;
    return kind::consumed;
}

channel_positions::kind channel_positions::on_position(std::string_view payload) {
    const auto w = io::protocol_words(payload);
    std::uint64_t first = 0, count = 0;
    pair_seq_ = 0;
    if (w.size() < 3 || w.size() > 4 || !parse_protocol_u64(w[1], first) ||
        !parse_protocol_u64(w[2], count) || count == 0 ||
        (w.size() == 4 && !parse_protocol_u64(w[3], pair_seq_))) {
        return fail(exit_code::failure,
                    fmt::format("{}: expected a position 'CHANNEL FIRST COUNT [SEQ]', got '{}'",
                                peer_, payload.substr(0, 80)));
    }
    current_ = std::string(w[0]);
    const auto it = positions_.find(current_);
    // A channel first seen live: its position starts here.
    if (it != positions_.end() && it->second.epoch == epoch_) {
        const std::uint64_t expected = it->second.last + 1;
        if (first < expected) {
            return fail(exit_code::failure,
                        fmt::format("{}: the server repeated offsets {} to {} of {} (protocol "
                                    "error)", peer_, first, expected - 1, current_));
        }
        if (first > expected && !lost(current_, expected, first - 1,
                                      "they left the server's history before they were sent")) {
            return kind::stop;
        }
    }
    expected_ = first;
    remaining_ = count;
    return kind::consumed;
}

bool channel_positions::lost(const std::string& channel, std::uint64_t from, std::uint64_t to,
                             std::string_view why) {
    event_(fmt::format(R"({{"event":"gap","channel":"{}","lost":{},"expected":{},"next":{}}})",
                       json_string(channel), to - from + 1, from, to + 1));
    const std::string text =
        fmt::format("{}: resume {}: {} messages lost (offsets {} to {}): {}", peer_, channel,
                    to - from + 1, from, to, why);
    if (no_gap_) {
        fail(exit_code::gap, text + " (--no-gap)");
        return false;
    }
    spdlog::warn("{}", text);
    return true;
}

channel_positions::kind channel_positions::fail(exit_code code, std::string text) {
    failure_ = code;
    failure_text_ = std::move(text);
    return kind::stop;
}

void channel_positions::save(bool now) {
    if (offset_file_.empty() || !dirty_) return;
    const auto t = std::chrono::steady_clock::now();
    if (!now && t - saved_at_ < std::chrono::milliseconds(200)) return;
    flush_();  // never claim a message that was not written out
    saved_at_ = t;
    std::string text;
    for (const auto& [channel, p] : positions_) {
        if (!p.epoch.empty()) text += fmt::format("{} {} {}\n", p.epoch, p.last, channel);
    }
    if (!global_.epoch.empty()) text += fmt::format("{} {} *\n", global_.epoch, global_.last);
    if (!replace_offset_file(offset_file_, text)) return;
    dirty_ = false;
}

}  // namespace framecast::app
