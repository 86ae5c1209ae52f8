#include "framecast/io/line_splitter.hpp"

#include <cstring>

namespace framecast::io {
namespace {

std::string_view without_cr(std::string_view s) {
    if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
    return s;
}

}  // namespace

line_splitter::event line_splitter::emit(std::string_view line) {
    ++number_;
    line_ = line;
    return event::line;
}

line_splitter::event line_splitter::refuse(std::size_t seen, bool complete) {
    ++number_;
    too_long_seen_ = seen;
    too_long_complete_ = complete;
    too_long_open_ = !complete;
    carry_.clear();
    line_ = {};
    return event::too_long;
}

line_splitter::event line_splitter::next(std::string_view& in) {
    if (carry_taken_) {
        carry_.clear();
        carry_taken_ = false;
    }
    if (skipping_) {
        if (in.empty()) return event::need_more;  // memchr must not see a null pointer
        const auto* nl = static_cast<const char*>(std::memchr(in.data(), '\n', in.size()));
        if (!nl) {
            in = {};
            return event::need_more;
        }
        in.remove_prefix(static_cast<std::size_t>(nl - in.data()) + 1);
        skipping_ = false;
    }
    if (in.empty()) return event::need_more;
    const auto* nl = static_cast<const char*>(std::memchr(in.data(), '\n', in.size()));
    if (!nl) {
        // Bounded: one byte of slack for the '\r' of a "\r\n" still to come.
        if (carry_.size() + in.size() > max_line_ + 1) {
            // Its length so far: a '\r' at the end may still be the start of a "\r\n".
            const std::size_t seen = carry_.size() + in.size() - (in.back() == '\r' ? 1 : 0);
            in = {};
            return refuse(seen, false);
        }
        carry_.append(in);
        in = {};
        return event::need_more;
    }
    const auto head = in.substr(0, static_cast<std::size_t>(nl - in.data()));
    in.remove_prefix(head.size() + 1);
    if (carry_.empty()) {  // the whole line is in this chunk: no copy
        const auto line = without_cr(head);
        if (line.size() > max_line_) return refuse(line.size(), true);
        return emit(line);
    }
    // The line is carry_ + head without a final '\r'; of a "\r\n" split between chunks, the
    // '\r' is the last byte of carry_.
    const char last = head.empty() ? carry_.back() : head.back();
    const std::size_t length = carry_.size() + head.size() - (last == '\r' ? 1 : 0);
    if (length > max_line_) return refuse(length, true);
    carry_.append(head);
    carry_taken_ = true;
    return emit(without_cr(carry_));
}

line_splitter::event line_splitter::finish() {
    if (carry_taken_) {
        carry_.clear();
        carry_taken_ = false;
    }
    if (finished_ || skipping_ || carry_.empty()) {
        finished_ = true;
        return event::need_more;
    }
    finished_ = true;
    const auto line = without_cr(carry_);
    if (line.size() > max_line_) return refuse(line.size(), true);
    carry_taken_ = true;
    return emit(line);
}

void line_splitter::skip_line() {
    if (too_long_open_) skipping_ = true;
    too_long_open_ = false;
}

std::string line_splitter::too_long_message() const {
    return "line " + std::to_string(number_) + " is longer than the largest message (" +
           std::to_string(max_line_) + " bytes): " + (too_long_complete_ ? "" : "at least ") +
           std::to_string(too_long_seen_) + " bytes";
}

}  // namespace framecast::io
