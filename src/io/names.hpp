// Chat usernames that cannot impersonate: what a name may contain, and the key under which
// --unique-names compares names (ICU's confusable skeleton, UTS #39, of the case-folded name),
// so "аlice" (Cyrillic а) and "Alice" are both "alice".
#pragma once

#include <string>
#include <string_view>

namespace framecast::io {

// Empty when `name` (valid UTF-8) is acceptable; otherwise what is wrong with it: a control,
// format (zero-width, bidirectional) or line/paragraph separator character, white space at
// either end, or " > " (what the chat client prints between a name and its message).
std::string name_problem(std::string_view name);

// The key two names that look alike share. Falls back to the name itself if ICU fails.
std::string name_skeleton(std::string_view name);

}  // namespace framecast::io
