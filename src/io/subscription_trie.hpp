// Who is subscribed to what: a trie of pattern tokens (a literal child per token, one `*`
// child, and at each node the subscribers whose pattern ends there or in `>` there), and a
// cache of channel -> subscribers. A publish costs one cache lookup, or on a miss a walk of
// the tokens along the branches that can match: never a visit to subscriptions that cannot.
// A subscriber appears once per channel however many of its patterns match.
//
// Subscribers are opaque pointers (never dereferenced here): the channel room's members, or
// made-up values in tests.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace framecast::io {

class member;

class subscription_trie {
public:
    using subscriber = const member*;
    using subscriber_list = std::shared_ptr<const std::vector<subscriber>>;

    // At most this many channels are cached; beyond it the cache starts over.
    explicit subscription_trie(std::size_t cache_limit = 4096);
    ~subscription_trie();

    enum class add_result { added, duplicate, too_many_patterns };
    // Adds `s` to a valid `pattern` (see check_name). A pattern nobody held yet counts against
    // `max_patterns` (distinct patterns on the server).
    add_result add(std::string_view pattern, subscriber s, std::size_t max_patterns);
    // False when `s` did not hold `pattern`.
    bool remove(std::string_view pattern, subscriber s);

    // The distinct subscribers of `channel` (a valid channel, no wildcards), sorted. Kept valid
    // by the shared pointer while the caller delivers, even if that closes someone.
    subscriber_list match(std::string_view channel);

    std::size_t patterns() const noexcept { return patterns_; }
    std::size_t subscriptions() const noexcept { return subscriptions_; }
    std::size_t cached() const noexcept { return cache_.size(); }
    // Changes whenever a subscription is added or removed: a result derived from match()
    // (e.g. "nobody receives this channel") holds while the generation is the same.
    std::uint64_t generation() const noexcept { return generation_; }

private:
    struct node;
    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    void collect(const node& n, std::string_view rest, std::vector<subscriber>& out) const;
    void invalidate(std::string_view pattern);

    std::unique_ptr<node> root_;
    std::unordered_map<std::string, subscriber_list, string_hash, std::equal_to<>> cache_;
    std::size_t cache_limit_;
    std::size_t patterns_ = 0;
    std::size_t subscriptions_ = 0;
    std::uint64_t generation_ = 0;
};

}  // namespace framecast::io
