// Publish acks across nodes: the commands and replies of redis_publishers.hpp's scripts, for
// the backplane's appending thread (pipelined with its other appends, in the same order).
#include "redis_publishers.hpp"

#include <fmt/format.h>

#include <string_view>
#include <vector>

namespace framecast::backplane::redis_publishers {

namespace {

std::string text_of(const redisReply* r) { return r && r->str ? std::string(r->str, r->len) : ""; }

// A command of string arguments (views: they must outlive send()), pipelined.
class argv {
public:
    void add(std::string_view s) {
        ptrs_.push_back(s.data());
        lens_.push_back(s.size());
    }
    bool send(redisContext* c) {
        return redisAppendCommandArgv(c, static_cast<int>(ptrs_.size()), ptrs_.data(),
                                      lens_.data()) == REDIS_OK;
    }
    void reserve(std::size_t n) {
        ptrs_.reserve(n);
        lens_.reserve(n);
    }

private:
    std::vector<const char*> ptrs_;
    std::vector<std::size_t> lens_;
};

std::string ends_text(const publisher_unit& unit) {
    std::string out;
    out.reserve(unit.ends.size() * 7);
    for (auto e : unit.ends) {
        if (!out.empty()) out += ' ';
        out += std::to_string(e);
    }
    return out;
}

}  // namespace

bool load(redisContext* c, scripts& out, std::string& error) {
    for (auto [body, sha] : {std::pair{&attach_script, &out.attach_sha},
                             std::pair{&append_script, &out.append_sha}}) {
        auto* r = static_cast<redisReply*>(redisCommand(c, "SCRIPT LOAD %s", body->c_str()));
        const bool ok = r && r->type == REDIS_REPLY_STRING;
        if (ok) *sha = text_of(r);
        error = ok ? "" : (r ? text_of(r) : c->errstr);
        if (r) freeReplyObject(r);
        if (!ok) return false;
    }
    return true;
}

bool send_attach(redisContext* c, const scripts& s, const keys& k, const std::string& publisher,
                 std::uint64_t first, const options& opts) {
    std::vector<std::string> words{"EVALSHA", s.attach_sha, "2", k.publishers, k.used, publisher,
                                   std::to_string(first), std::to_string(opts.publisher_expiry_ms),
                                   std::to_string(opts.max_publishers)};
    argv a;
    for (const auto& w : words) a.add(w);
    return a.send(c);
}

bool send_append(redisContext* c, const scripts& s, const append_args& a,
                 const std::string& framed, std::size_t messages, const publisher_unit& unit) {
    argv cmd;
    cmd.reserve(32);
    // Strings that must outlive the call: numbers, made once here.
    std::vector<std::string> n;
    n.reserve(16);
    for (std::uint64_t v : {a.keep, static_cast<std::uint64_t>(messages), unit.first, unit.last,
                            a.opts.publisher_expiry_ms, a.opts.max_publishers, a.origin_client,
                            a.millis}) {
        n.push_back(std::to_string(v));
    }
    n.push_back(ends_text(unit));
    n.push_back(std::to_string(a.opts.max_channels));
    for (std::string_view w : {std::string_view("EVALSHA"), std::string_view(s.append_sha),
                               std::string_view("6"), std::string_view(a.stream),
                               std::string_view(a.seen), std::string_view(a.k.publishers),
                               std::string_view(a.k.used), std::string_view(a.channels),
                               std::string_view(a.channel_use), std::string_view(n[0]),
                               std::string_view(a.candidate_epoch), std::string_view(n[1]),
                               std::string_view(unit.publisher), std::string_view(n[2]),
                               std::string_view(n[3]), std::string_view(n[8]),
                               std::string_view(n[4]), std::string_view(n[5]),
                               std::string_view(a.numbered ? "1" : "0"),
                               std::string_view(a.channel), std::string_view(n[9]),
                               std::string_view("n"),
                               std::string_view(a.node), std::string_view("s"),
                               std::string_view("0"), std::string_view("c"),
                               std::string_view(n[6])}) {
        cmd.add(w);
    }
    if (a.numbered) {  // the entry's time, for the readers' lag (as redis_offsets' entries)
        cmd.add("t");
        cmd.add(n[7]);
    }
    cmd.add("f");
    cmd.add(framed);
    return cmd.send(c);
}

publisher_receipt receipt_of(const redisReply* r, std::uint64_t origin_client,
                             const publisher_unit* unit) {
    publisher_receipt out;
    out.origin_client = origin_client;
    if (!unit) {
        out.what = publisher_receipt::kind::attached;
        if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
            out.last = static_cast<std::uint64_t>(r->integer);
        } else {
            out.what = publisher_receipt::kind::failed;
            out.why = "unexpected reply to the publisher's attach: " + text_of(r);
        }
        return out;
    }
    const std::string verb = r->type == REDIS_REPLY_ARRAY && r->elements >= 2
                                 ? text_of(r->element[0]) : "";
    const auto number = [&](std::size_t i) -> std::uint64_t {
        const redisReply* e = r->element[i];
        if (e->type == REDIS_REPLY_INTEGER) return static_cast<std::uint64_t>(e->integer);
        return std::strtoull(text_of(e).c_str(), nullptr, 10);
    };
    out.last = unit->last;
    if (verb == "ok") {
        out.duplicates = number(1);
        out.entry = true;
    } else if (verb == "dup") {
        out.duplicates = number(1);
    } else if (verb == "gap") {
        out.what = publisher_receipt::kind::failed;
        out.why = fmt::format("the shared log has this publisher's messages up to {} only, and "
                              "this connection sent from {} on (something before was not "
                              "appended): start again from there", number(1), unit->first);
    } else {
        out.what = publisher_receipt::kind::failed;
        out.why = "unexpected reply to a publisher's append: " + text_of(r);
    }
    return out;
}

}  // namespace framecast::backplane::redis_publishers
