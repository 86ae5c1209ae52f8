// framecast connect --resume (docs/resume.md): sends the "@resume" request first on every
// connection, ignores what arrives before the answer, then reads position frames and the
// messages they announce, counting offsets. Every loss is reported (stderr, a JSON event);
// with --no-gap it ends the program. --offset-file keeps the position across runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "framecast/error.hpp"
#include "framecast/io/client.hpp"
#include "output.hpp"

namespace framecast::app {

// What the client has: every message up to `last` of `epoch` (empty epoch: nothing yet).
struct resume_position {
    std::string epoch;
    std::uint64_t last = 0;
};

// Reads "EPOCH LAST" from `file`; a missing file is no position. False (and why) when the
// file cannot be read or does not hold a position.
bool load_offset_file(const std::string& file, resume_position& pos, std::string& error);

class resume_reader final : public io::frame_handler {
public:
    resume_reader(output_sink& sink, resume_position& pos, bool no_gap, std::string offset_file,
                  std::string peer);

    // A new connection: the request to send as its first frame's payload.
    std::string request();
    bool answered() const noexcept { return state_ != state::waiting; }
    // Set when the stream must end: the server refused or broke the protocol (failure), or
    // messages were lost with --no-gap (gap). `failure_text` says why.
    const std::optional<exit_code>& failure() const noexcept { return failure_; }
    const std::string& failure_text() const noexcept { return failure_text_; }
    // Writes the offset file now (after the output is flushed), if the position changed.
    void save();

    void on_read(std::size_t n) override { sink_.on_read(n); }
    bool on_frame(std::string_view payload) override;
    void on_idle() override;

private:
    enum class state { waiting, position, messages };
    bool on_answer(std::string_view payload);
    bool on_position(std::string_view payload);
    bool lost(std::uint64_t from, std::uint64_t to, std::string_view why);
    bool fail(exit_code code, std::string text);

    output_sink& sink_;
    resume_position& pos_;
    bool no_gap_;
    std::string offset_file_;
    std::string peer_;
    std::string nonce_;
    state state_ = state::waiting;
    std::uint64_t expected_ = 0;   // the offset of the next message
    std::uint64_t remaining_ = 0;  // messages the last position frame announced, still to come
    std::optional<exit_code> failure_;
    std::string failure_text_;
    resume_position saved_;
    std::chrono::steady_clock::time_point saved_at_{};
};

}  // namespace framecast::app
