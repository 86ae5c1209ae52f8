#include "subscription_trie.hpp"

#include <algorithm>

#include "channel_protocol.hpp"

namespace framecast::io {

struct subscription_trie::node {
    std::unordered_map<std::string, std::unique_ptr<node>, string_hash, std::equal_to<>> children;
    std::unique_ptr<node> star;         // the `*` token
    std::vector<subscriber> here;       // patterns that end at this node
    std::vector<subscriber> rest;       // patterns that end with `>` after this node

    bool unused() const noexcept {
        return children.empty() && !star && here.empty() && rest.empty();
    }
};

subscription_trie::subscription_trie(std::size_t cache_limit)
    : root_(std::make_unique<node>()), cache_limit_(cache_limit) {}

subscription_trie::~subscription_trie() = default;

subscription_trie::add_result subscription_trie::add(std::string_view pattern, subscriber s,
                                                     std::size_t max_patterns) {
    // Walk (creating) to the node that holds the pattern's list; remember what was created so
    // a refused pattern leaves nothing behind.
    node* n = root_.get();
    bool ends_with_rest = false;
    std::vector<std::pair<node*, std::string_view>> created;
    for (std::string_view rest = pattern; !rest.empty();) {
        const auto token = next_token(rest);
        if (token == ">") {
            ends_with_rest = true;
            break;
        }
        std::unique_ptr<node>* child = nullptr;
        if (token == "*") {
            child = &n->star;
        } else if (auto it = n->children.find(token); it != n->children.end()) {
            child = &it->second;
        } else {
            child = &n->children.emplace(std::string(token), nullptr).first->second;
        }
        if (!*child) {
            *child = std::make_unique<node>();
            created.emplace_back(n, token);
        }
        n = child->get();
    }
    auto& list = ends_with_rest ? n->rest : n->here;
    if (std::find(list.begin(), list.end(), s) != list.end()) return add_result::duplicate;
    if (list.empty() && patterns_ >= max_patterns) {
        for (auto it = created.rbegin(); it != created.rend(); ++it) {
            auto [parent, token] = *it;
            if (token == "*") {
                parent->star.reset();
            } else {
                parent->children.erase(parent->children.find(token));
            }
        }
        return add_result::too_many_patterns;
    }
    if (list.empty()) ++patterns_;
    list.push_back(s);
    ++subscriptions_;
    invalidate(pattern);
    return add_result::added;
}

bool subscription_trie::remove(std::string_view pattern, subscriber s) {
    // The path, to prune nodes left unused on the way back.
    std::vector<std::pair<node*, std::string_view>> path;
    node* n = root_.get();
    bool ends_with_rest = false;
    for (std::string_view rest = pattern; !rest.empty();) {
        const auto token = next_token(rest);
        if (token == ">") {
            ends_with_rest = true;
            break;
        }
        node* child = nullptr;
        if (token == "*") {
            child = n->star.get();
        } else if (auto it = n->children.find(token); it != n->children.end()) {
            child = it->second.get();
        }
        if (!child) return false;
        path.emplace_back(n, token);
        n = child;
    }
    auto& list = ends_with_rest ? n->rest : n->here;
    auto it = std::find(list.begin(), list.end(), s);
    if (it == list.end()) return false;
    *it = list.back();
    list.pop_back();
    --subscriptions_;
    if (list.empty()) {
        --patterns_;
        list.shrink_to_fit();
    }
    for (auto p = path.rbegin(); p != path.rend(); ++p) {
        auto [parent, token] = *p;
        if (token == "*") {
            if (!parent->star->unused()) break;
            parent->star.reset();
        } else {
            auto c = parent->children.find(token);
            if (!c->second->unused()) break;
            parent->children.erase(c);
        }
    }
    invalidate(pattern);
    return true;
}

// A new or removed subscription changes the result for exactly the channels its pattern
// matches: only those cached entries go (bounded by the cache's size).
void subscription_trie::invalidate(std::string_view pattern) {
    ++generation_;
    if (cache_.empty()) return;
    if (!has_wildcards(pattern)) {
        if (auto it = cache_.find(pattern); it != cache_.end()) cache_.erase(it);
        return;
    }
    std::erase_if(cache_, [pattern](const auto& entry) {
        return pattern_matches(pattern, entry.first);
    });
}

void subscription_trie::collect(const node& n, std::string_view rest,
                                std::vector<subscriber>& out) const {
    if (rest.empty()) {
        out.insert(out.end(), n.here.begin(), n.here.end());
        return;
    }
    // At least one token is left: `>` here takes it and all after it.
    out.insert(out.end(), n.rest.begin(), n.rest.end());
    const auto token = next_token(rest);
    if (auto it = n.children.find(token); it != n.children.end()) collect(*it->second, rest, out);
    if (n.star) collect(*n.star, rest, out);
}

subscription_trie::subscriber_list subscription_trie::match(std::string_view channel) {
    if (auto it = cache_.find(channel); it != cache_.end()) return it->second;
    std::vector<subscriber> out;
    collect(*root_, channel, out);
    // A subscriber whose patterns overlap (`a.*` and `a.>`) receives the message once.
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    auto list = std::make_shared<const std::vector<subscriber>>(std::move(out));
    if (cache_.size() >= cache_limit_) cache_.clear();
    cache_.emplace(std::string(channel), list);
    return list;
}

}  // namespace framecast::io
