// Permissions from a token (serve --auth jwt, --channels): which channels a client may publish
// to and which patterns it may subscribe to, as allow and deny lists of patterns with NATS
// semantics (`*` one token, `>` the rest; deny wins). The token's "framecast" claim:
//   {"publish":   {"allow": ["prices.>"], "deny": ["prices.secret"]},
//    "subscribe": {"allow": ["prices.*", "news.>"], "deny": ["news.internal.>"]}}
// A missing list allows everything (allow) or nothing more (deny). docs/security.md.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace framecast::io {

struct permission_list {
    std::optional<std::vector<std::string>> allow;  // none: every name
    std::vector<std::string> deny;
};

struct permissions {
    permission_list publish, subscribe;

    // PUB `channel`: an allow pattern matches it (or there is no allow list) and no deny does.
    bool may_publish(std::string_view channel) const;
    // SUB `pattern`: every channel it can match is covered by one allow pattern, and it is not
    // wholly inside a deny pattern. A pattern that only overlaps a deny is accepted, and the
    // denied channels are filtered out on delivery (may_receive).
    bool may_subscribe(std::string_view pattern) const;
    // A delivery on `channel` to a subscriber with these permissions.
    bool may_receive(std::string_view channel) const;
    // Whether deliveries need may_receive (there are subscribe denies).
    bool filters_deliveries() const noexcept { return !subscribe.deny.empty(); }
};

// Whether every channel `inner` matches is also matched by `outer` (both valid patterns).
bool pattern_covers(std::string_view outer, std::string_view inner) noexcept;

// Parses the claim's JSON. Throws std::invalid_argument naming what is wrong (a list that is
// not an array of valid patterns, an unknown key); `what` names the object in messages.
std::shared_ptr<const permissions> parse_permissions(std::string_view json,
                                                     std::string_view what = "framecast");

}  // namespace framecast::io
