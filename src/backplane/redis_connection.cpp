// The Redis backplane's connections (redis_backplane.hpp): connect, AUTH, the offsets'
// scripts, "not ready" replies, and the backoff between attempts; shared by the reading and
// appending threads.
#include <spdlog/spdlog.h>

#include <chrono>
#include <string_view>

#include "redis_backplane.hpp"
#include "redis_offsets.hpp"

namespace framecast::backplane::redis {

bool is_not_ready(const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_ERROR || r->str == nullptr) return false;
    const std::string_view text(r->str, r->len);
    const std::string_view code = text.substr(0, text.find(' '));
    return code == "LOADING" || code == "BUSY" || code == "TRYAGAIN" || code == "MASTERDOWN";
}

// Connects, or returns null after logging why. `role` names the thread in logs.
context_ptr redis_backplane::connect(const char* role, connection_log& log) {
    timeval connect_timeout{2, 0};
    context_ptr c(redisConnectWithTimeout(addr_.host.c_str(), addr_.port, connect_timeout));
    if (!c || c->err) {
        if (!log.logged_down) {
            spdlog::warn("backplane {} ({}): cannot connect: {}; retrying with backoff",
                         describe(), role, c ? c->errstr : "out of memory");
            log.logged_down = true;
        }
        return nullptr;
    }
    // Bound every reply wait: a read blocks at most block_seconds on the server side.
    auto io = std::chrono::duration<double>(opts_.block_seconds + 5.0);
    timeval io_timeout{static_cast<time_t>(io.count()), 0};
    redisSetTimeout(c.get(), io_timeout);
    if (!addr_.password.empty() && !authenticate(c.get(), role, log)) return nullptr;
    const bool scripts = opts_.offsets && std::string_view(role) != "replay";  // reads only
    if (scripts && !load_script(c.get(), role, log)) return nullptr;
    if (log.ever_connected) {
        ++reconnects_;
        spdlog::info("backplane {} ({}): reconnected", describe(), role);
    } else {
        spdlog::info("backplane {} ({}): connected as node {}", describe(), role, node_id_);
    }
    log.ever_connected = true;
    log.logged_down = false;
    return c;
}

// AUTH [user] password; false (logged once per outage) when refused.
bool redis_backplane::authenticate(redisContext* c, const char* role, connection_log& log) {
    reply_ptr r = addr_.user.empty()
                      ? command(c, "AUTH %b", addr_.password.data(), addr_.password.size())
                      : command(c, "AUTH %b %b", addr_.user.data(), addr_.user.size(),
                                addr_.password.data(), addr_.password.size());
    if (r && r->type != REDIS_REPLY_ERROR) return true;
    if (!log.logged_down) {
        spdlog::error("backplane {} ({}): authentication failed: {}; retrying with backoff",
                      describe(), role, r ? reply_text(r.get()) : c->errstr);
        log.logged_down = true;
    }
    return false;
}

// SCRIPT LOAD of the offsets' scripts on every connection (a restarted Redis has none).
bool redis_backplane::load_script(redisContext* c, const char* role, connection_log& log) {
    const bool append = std::string_view(role) == "append";
    const std::string& body = append ? redis_offsets::append_script : redis_offsets::init_script;
    reply_ptr r = command(c, "SCRIPT LOAD %s", body.c_str());
    if (r && r->type == REDIS_REPLY_STRING) {
        (append ? append_sha_ : init_sha_) = reply_text(r.get());
        return true;
    }
    if (!log.logged_down) {
        spdlog::error("backplane {} ({}): cannot load the offsets script: {}; retrying with "
                      "backoff", describe(), role, r ? reply_text(r.get()) : c->errstr);
        log.logged_down = true;
    }
    return false;
}

// "Redis is not ready" (is_not_ready), once until it is: what waits meanwhile is `then`.
void redis_backplane::say_not_ready(connection_log& log, const redisReply* r,
                                    std::string_view then) {
    if (log.logged_not_ready) return;
    spdlog::warn("backplane {}: Redis is not ready: {}; {}", describe(), reply_text(r), then);
    log.logged_not_ready = true;
}

// How long each loop waits before its next connection attempt (one per thread).
io::backoff redis_backplane::make_backoff() const {
    return io::backoff({.min = std::chrono::milliseconds(100),
                        .max = std::chrono::duration_cast<io::backoff::duration>(
                            std::chrono::duration<double>(opts_.max_backoff_seconds))});
}

// Sleeps for the next backoff step, waking early on stop().
void redis_backplane::wait_to_retry(io::backoff& delays) {
    const auto d = delays.next();
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, d, [this] { return stopping_.load(); });
}

}  // namespace framecast::backplane::redis
