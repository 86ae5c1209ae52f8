#include "permissions.hpp"

#include <stdexcept>

#include <boost/json.hpp>

#include "channel_protocol.hpp"
#include "framecast/io/server.hpp"

namespace framecast::io {
namespace {

std::vector<std::string_view> tokens(std::string_view name) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    for (;;) {
        const auto dot = name.find('.', start);
        out.push_back(name.substr(start, dot == std::string_view::npos ? dot : dot - start));
        if (dot == std::string_view::npos) return out;
        start = dot + 1;
    }
}

bool any_matches(const std::vector<std::string>& patterns, std::string_view channel) {
    for (const auto& p : patterns) {
        if (pattern_matches(p, channel)) return true;
    }
    return false;
}

bool any_covers(const std::vector<std::string>& patterns, std::string_view inner) {
    for (const auto& p : patterns) {
        if (pattern_covers(p, inner)) return true;
    }
    return false;
}

permission_list parse_list(const boost::json::value& v, std::string_view what) {
    const auto* obj = v.if_object();
    if (!obj) throw std::invalid_argument(std::string(what) + " is not an object");
    permission_list out;
    for (const auto& [key, value] : *obj) {
        if (key != "allow" && key != "deny") {
            throw std::invalid_argument(std::string(what) + " has an unknown key '" +
                                        std::string(key) + "' (allow, deny)");
        }
        const auto* arr = value.if_array();
        if (!arr) {
            throw std::invalid_argument(std::string(what) + "." + std::string(key) +
                                        " is not an array of patterns");
        }
        std::vector<std::string> patterns;
        for (const auto& item : *arr) {
            const auto* s = item.if_string();
            std::string detail;
            const channel_limits limits{};
            if (!s || check_name(*s, true, limits, detail) != channel_error::none) {
                throw std::invalid_argument(std::string(what) + "." + std::string(key) +
                                            " holds something that is not a pattern: " +
                                            boost::json::serialize(item));
            }
            patterns.emplace_back(*s);
        }
        if (key == "allow") {
            out.allow = std::move(patterns);
        } else {
            out.deny = std::move(patterns);
        }
    }
    return out;
}

}  // namespace

bool pattern_covers(std::string_view outer, std::string_view inner) noexcept {
    const auto o = tokens(outer);
    const auto in = tokens(inner);
    for (std::size_t i = 0; i < o.size(); ++i) {
        if (o[i] == ">") return i < in.size();  // the rest: at least one token
        if (i >= in.size()) return false;
        if (in[i] == ">") return false;         // inner matches more tokens than outer here
        if (o[i] == "*") continue;              // a literal or `*` inside `*`
        if (in[i] != o[i]) return false;        // a literal only covers itself
    }
    return o.size() == in.size();
}

bool permissions::may_publish(std::string_view channel) const {
    if (publish.allow && !any_matches(*publish.allow, channel)) return false;
    return !any_matches(publish.deny, channel);
}

bool permissions::may_subscribe(std::string_view pattern) const {
    if (subscribe.allow && !any_covers(*subscribe.allow, pattern)) return false;
    return !any_covers(subscribe.deny, pattern);
}

bool permissions::may_receive(std::string_view channel) const {
    return !any_matches(subscribe.deny, channel);
}

std::shared_ptr<const permissions> parse_permissions(std::string_view json, std::string_view what) {
    const std::string name(what);
    // A token's claim is named as such; a configuration's entry by its key.
    const std::string whole = what == "framecast" ? "the framecast claim" : name;
    boost::system::error_code ec;
    const auto v = boost::json::parse(json, ec);
    if (ec) throw std::invalid_argument(whole + " is not JSON: " + ec.message());
    const auto* obj = v.if_object();
    if (!obj) throw std::invalid_argument(whole + " is not an object");
    auto p = std::make_shared<permissions>();
    for (const auto& [key, value] : *obj) {
        if (key == "publish") {
            p->publish = parse_list(value, name + ".publish");
        } else if (key == "subscribe") {
            p->subscribe = parse_list(value, name + ".subscribe");
        } else {
            throw std::invalid_argument(whole + " has an unknown key '" + std::string(key) +
                                        "' (publish, subscribe)");
        }
    }
    return p;
}

std::string permissions_error(std::string_view json, std::string_view what) {
    try {
        parse_permissions(json, what);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return {};
}

}  // namespace framecast::io
