// hiredis in blocking mode, as the Redis files use it: owned contexts and replies, a command,
// a reply's text. Kept apart so each thread's code (redis_backplane.hpp's files,
// redis_replay.cpp) shares one definition.
#pragma once

#include <hiredis/hiredis.h>

#include <memory>
#include <string>

namespace framecast::backplane::redis {

struct context_deleter {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using context_ptr = std::unique_ptr<redisContext, context_deleter>;

struct reply_deleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

template <class... Args>
reply_ptr command(redisContext* c, const char* format, Args... args) {
    return reply_ptr(static_cast<redisReply*>(redisCommand(c, format, args...)));
}

inline std::string reply_text(const redisReply* r) {
    return r && r->str ? std::string(r->str, r->len) : "";
}

}  // namespace framecast::backplane::redis
