// framecast sub --resume (docs/resume.md#channels): one position per channel. Sends "RESUME"
// and a "RESUME CHANNEL EPOCH LAST" per known channel first on every connection, reads the
// answers and the position pairs ($sys.pos "CHANNEL FIRST COUNT SEQ") in front of deliveries,
// reports every loss per channel (stderr, a JSON event; --no-gap ends the program), and keeps
// the positions in --offset-file, one line "EPOCH LAST CHANNEL" per channel. It also sends
// "RESUME * EPOCH SEQ" with the process-wide sequence it has seen everything up to (a line
// "EPOCH SEQ *" in the file), so that a channel first published while it was away is replayed.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "framecast/codec.hpp"
#include "framecast/error.hpp"

namespace framecast::app {

class channel_positions {
public:
    // `event` receives each JSON event line (a gap, an epoch change), `flush` makes the output
    // written so far durable before the offset file claims it.
    channel_positions(bool no_gap, std::string offset_file, std::string peer,
                      std::function<void(const std::string&)> event,
                      std::function<void()> flush);

    // Reads --offset-file; false (and why) when it cannot be read or is not one.
    bool load(std::string& error);
    // The commands that start a connection (framed), before the SUBs.
    std::string commands(const codec_options& codec);

    enum class kind { delivery, consumed, stop };
    // A pair from the server. `delivery`: an ordinary delivery, whose offset is `offset`
    // (0: none); `consumed`: a resume notice or a position pair; `stop`: see failure().
    kind on_pair(std::string_view channel, std::string_view payload, std::uint64_t& offset);
    const std::optional<exit_code>& failure() const noexcept { return failure_; }
    const std::string& failure_text() const noexcept { return failure_text_; }
    // Writes the offset file if positions changed (at most every 200 ms unless `now`).
    void save(bool now);

private:
    struct position {
        std::string epoch;
        std::uint64_t last = 0;
    };
    kind on_resumed(std::string_view payload);
    kind on_resumed_all(std::string_view epoch, std::uint64_t next, std::string_view status,
                        std::string_view lost_word);
    kind on_position(std::string_view payload);
    bool lost(const std::string& channel, std::uint64_t from, std::uint64_t to,
              std::string_view why);
    kind fail(exit_code code, std::string text);

    bool no_gap_;
    std::string offset_file_;
    std::string peer_;
    std::function<void(const std::string&)> event_;
    std::function<void()> flush_;
    std::string epoch_;  // the server's, from the answer to RESUME
    std::map<std::string, position, std::less<>> positions_;
    position global_;            // the process-wide sequence ("*"), once the server gave one
    std::uint64_t pair_seq_ = 0;  // the last position pair's sequence, for when it is consumed
    std::string current_;          // the channel of the last position pair
    std::uint64_t expected_ = 0;   // its next offset
    std::uint64_t remaining_ = 0;  // deliveries the last position pair announced, still to come
    bool dirty_ = false;
    std::chrono::steady_clock::time_point saved_at_{};
    std::optional<exit_code> failure_;
    std::string failure_text_;
};

}  // namespace framecast::app
