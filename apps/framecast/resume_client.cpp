#include "resume_client.hpp"

#include "framecast/io/protocol_words.hpp"
#include "offset_file.hpp"

#include <charconv>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace framecast::app {

using io::parse_protocol_u64;

namespace {

std::string random_nonce() {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
}

}  // namespace

bool load_offset_file(const std::string& file, resume_position& pos, std::string& error) {
    std::ifstream in(file);
    if (!in) return true;  // not there yet: no position
    std::string epoch, last;
    in >> epoch >> last;
    if (epoch.empty() && last.empty()) return true;  // empty file
    std::uint64_t v = 0;
    if (epoch.empty() || !parse_protocol_u64(last, v)) {
        error = "--offset-file " + file + ": expected 'EPOCH LAST' (as written by --resume)";
        return false;
    }
    pos = {epoch, v};
    return true;
}

resume_reader::resume_reader(output_sink& sink, resume_position& pos, bool no_gap,
                             std::string offset_file, std::string peer)
    : sink_(sink), pos_(pos), no_gap_(no_gap), offset_file_(std::move(offset_file)),
      peer_(std::move(peer)), saved_(pos) {}

std::string resume_reader::request() {
    nonce_ = random_nonce();
    state_ = state::waiting;
    remaining_ = 0;
    if (pos_.epoch.empty()) return "@resume " + nonce_;
    return fmt::format("@resume {} {} {}", nonce_, pos_.epoch, pos_.last);
}

bool resume_reader::on_frame(std::string_view payload) {
    switch (state_) {
    case state::waiting: return on_answer(payload);
    case state::position: return on_position(payload);
    case state::messages: break;
    }
    pos_.last = expected_;
    sink_.set_offset(expected_);
    ++expected_;
    if (--remaining_ == 0) state_ = state::position;
    return sink_.on_frame(payload);
}

// Frames before the answer were queued before the server read the request: not ours.
bool resume_reader::on_answer(std::string_view payload) {
    if (payload.starts_with("@resume-error ")) {
        return fail(exit_code::failure,
                    fmt::format("{}: the server refused to resume: {}", peer_, payload.substr(14)));
    }
    const std::string prefix = "@resumed " + nonce_ + " ";
    if (!payload.starts_with(prefix)) return true;
    const auto w = io::protocol_words(payload.substr(prefix.size()));
    std::uint64_t next = 0;
    if (w.size() < 3 || w[0].empty() || !parse_protocol_u64(w[1], next) || next == 0) {
        return fail(exit_code::failure, fmt::format("{}: a resume answer this client does not "
                                                    "understand: '{}'", peer_, payload));
    }
    const std::string epoch(w[0]);
    const std::string_view status = w[2];
    state_ = state::position;
    expected_ = next;
    const resume_position before = pos_;
    // The position moves to NEXT-1 only once a loss is accepted: with --no-gap the file keeps
    // the old one, and the next run reports the loss again.
    bool ok = true;
    if (status == "epoch" && !before.epoch.empty()) {
        sink_.event(fmt::format(R"({{"event":"epoch","old":"{}","new":"{}","next":{}}})",
                                before.epoch, epoch, next));
        const std::string text = fmt::format(
            "{}: resume: the server's history changed (epoch {} is gone, now {}): messages "
            "after offset {} of the old epoch may be lost; continuing at offset {}",
            peer_, before.epoch, epoch, before.last, next);
        if (no_gap_) return fail(exit_code::gap, text + " (--no-gap)");
        spdlog::warn("{}", text);
    } else if (status == "gap" && w.size() == 4) {
        ok = lost(before.last + 1, next - 1, "outside the server's window");
    } else {
        spdlog::info("{}: resumed at offset {} ({})", peer_, next, status);
    }
    if (ok) pos_ = {epoch, next - 1};
    return ok;
}

bool resume_reader::on_position(std::string_view payload) {
    const auto w = io::protocol_words(payload);
    std::uint64_t first = 0, count = 0;
    if (w.size() != 2 || !parse_protocol_u64(w[0], first) || !parse_protocol_u64(w[1], count) || count == 0) {
        return fail(exit_code::failure,
                    fmt::format("{}: expected a position frame 'FIRST COUNT', got '{}'", peer_,
                                payload.substr(0, 80)));
    }
    if (first < expected_) {
        return fail(exit_code::failure,
                    fmt::format("{}: the server repeated offsets {} to {} (protocol error)", peer_,
                                first, expected_ - 1));
    }
    if (first > expected_ && !lost(expected_, first - 1, "they left the server's history "
                                                         "before they were sent")) {
        return false;
    }
    expected_ = first;
    remaining_ = count;
    state_ = state::messages;
    return true;
}

bool resume_reader::lost(std::uint64_t from, std::uint64_t to, std::string_view why) {
    sink_.event(fmt::format(R"({{"event":"gap","lost":{},"expected":{},"next":{}}})",
                            to - from + 1, from, to + 1));
    const std::string text =
        fmt::format("{}: resume: {} messages lost (offsets {} to {}): {}", peer_, to - from + 1,
                    from, to, why);
    if (no_gap_) return fail(exit_code::gap, text + " (--no-gap)");
    spdlog::warn("{}", text);
    return true;
}

bool resume_reader::fail(exit_code code, std::string text) {
    failure_ = code;
    failure_text_ = std::move(text);
    return false;
}

void resume_reader::on_idle() {
    sink_.on_idle();
    const auto now = std::chrono::steady_clock::now();
    if (now - saved_at_ >= std::chrono::milliseconds(200)) save();
}

void resume_reader::save() {
    if (offset_file_.empty() || pos_.epoch.empty()) return;
    if (pos_.epoch == saved_.epoch && pos_.last == saved_.last) return;
    sink_.flush();  // never claim a message that was not written out
    saved_at_ = std::chrono::steady_clock::now();
    if (!replace_offset_file(offset_file_, fmt::format("{} {}\n", pos_.epoch, pos_.last))) return;
    saved_ = pos_;
}

}  // namespace framecast::app
