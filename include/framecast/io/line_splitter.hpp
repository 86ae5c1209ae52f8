// Lines out of a byte stream, incrementally: bytes go in as they are read, lines come out.
// One rule for every stdin reader (serve --source stdin, connect --send, send, chat):
// - "\n" ends a line and "\r\n" ends it too (the '\r' is not part of the line); a '\r'
//   elsewhere is data, except that a last line without "\n" loses one trailing '\r'.
// - A last line without "\n" is a line; an empty input has no lines.
// - A line longer than max_line is an error (too_long), never split and never held whole:
//   at most max_line + 1 bytes of a partial line are buffered.
// A line that arrives whole in one chunk is returned as a view into that chunk (no copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace framecast::io {

class line_splitter {
public:
    enum class event {
        line,       // line() holds the next line
        need_more,  // the input is used up; a partial line is kept for the next chunk
        too_long,   // the current line is longer than max_line (see too_long_message())
    };

    explicit line_splitter(std::size_t max_line) : max_line_(max_line) {}

    // Takes bytes from `in`, advancing it past what was used, until a line is complete, the
    // input is used up, or the current line is too long. After too_long, call skip_line() to
    // go on with the next line, or stop.
    event next(std::string_view& in);
    // End of input: the last line if it had no "\n" (event::line, once), else need_more; or
    // too_long.
    event finish();
    // After too_long: drops the rest of that line (up to its "\n", however far) and counts it.
    void skip_line();

    // The line of the last event::line: a view into the chunk given to next() or into the
    // splitter, valid until the next call.
    std::string_view line() const noexcept { return line_; }
    // The number (from 1) of the line last returned, or of the line that is too long.
    std::uint64_t line_number() const noexcept { return number_; }
    std::size_t max_line() const noexcept { return max_line_; }
    // "line 3 is longer than the largest message (16 bytes): 17 bytes" ("at least 18 bytes"
    // while its end has not been seen).
    std::string too_long_message() const;

private:
    event emit(std::string_view line);
    event refuse(std::size_t seen, bool complete);

    std::size_t max_line_;
    std::string carry_;          // a partial line spanning chunks, at most max_line_ + 1 bytes
    bool carry_taken_ = false;   // carry_ was returned as line_: clear it on the next call
    bool skipping_ = false;      // dropping the rest of a too-long line
    bool too_long_open_ = false; // the too-long line's "\n" has not been seen yet
    bool finished_ = false;
    std::string_view line_;
    std::uint64_t number_ = 0;
    std::size_t too_long_seen_ = 0;
    bool too_long_complete_ = false;
};

}  // namespace framecast::io
