// Publish acks across nodes (docs/resume.md, "Several nodes"): Redis keeps each publisher's
// last accepted number beside the stream, and a publisher's unit is appended only past it, in
// the same Lua script (atomic: no other client's command runs inside it; persisted as its
// effects with the stream in the append-only file). So a publisher that reconnects to another
// node, or to a restarted one, is deduplicated as on one node, and a node acknowledges a
// message only once the script has put it in the stream.
//
// * PUBLISHERS_KEY, a hash: publisher (the node's table key, subject-scoped) -> last number.
// * USED_KEY, a sorted set: publisher -> when it was last used (Redis TIME, ms). Both scripts
//   end by forgetting up to 64 publishers unused for the expiry, or else (the set beyond its
//   count bound) the longest unused ones: each script adds at most one, so the hash stays
//   bounded by --publisher-expiry and --max-publishers without a sweep of its own.
// * A unit whose first number is past last + 1 (something before it never reached the log:
//   dropped by a full pending queue, or lost with Redis's last second) is refused ("gap"): the
//   node closes that connection, and the publisher resends from the log's last number.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>

#include "framecast/backplane.hpp"
#include "redis_offsets.hpp"

namespace framecast::backplane::redis_publishers {

inline constexpr const char* forget_function = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function forget_unused(pubs, used, now, expiry, max)
  local gone = redis.call('ZRANGEBYSCORE', used, '-inf', now - tonumber(expiry), 'LIMIT', 0, 64)
  if #gone == 0 then
    local over = redis.call('ZCARD', used) - tonumber(max)
    if over > 0 then gone = redis.call('ZRANGE', used, 0, math.min(over, 64) - 1) end
  end
  if #gone > 0 then
    redis.call('HDEL', pubs, unpack(gone))
    redis.call('ZREM', used, unpack(gone))
  end
end
)lua";

// KEYS: publishers, used. ARGV: publisher, FIRST, expiry ms, max publishers. Returns the
// publisher's last number, raised to FIRST - 1 (the client holds nothing before FIRST).
inline const std::string attach_script = std::string(forget_function) + R"lua(
local pubs, used, pub = KEYS[1], KEYS[2], ARGV[1]
local now = now_ms()
local have = tonumber(redis.call('HGET', pubs, pub)) or 0
local held = tonumber(ARGV[2]) - 1
if held > have then
  have = held
  redis.call('HSET', pubs, pub, string.format('%.0f', have))
end
if have > 0 then redis.call('ZADD', used, now, pub) end
forget_unused(pubs, used, now, ARGV[3], ARGV[4])
return have
)lua";

// KEYS: stream, seen, publishers, used, channels, channel use. ARGV: keep (MAXLEN ~), candidate
// epoch, messages, publisher, first, last, message ends ("e1 e2 ..."), expiry ms, max
// publishers, numbered ("1": offsets), channel ("": none), channels bound, then the entry's
// field/value pairs, "f" FRAMED last. Returns {"ok", skipped,
// id}, {"dup", messages} or {"gap", last}.
inline const std::string append_script = redis_offsets::append_functions +
                                         redis_offsets::channel_functions +
                                         forget_function + R"lua(
local stream, seen, pubs, used = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local m, pub = tonumber(ARGV[3]), ARGV[4]
local first, last = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local have = tonumber(redis.call('HGET', pubs, pub))
if have and first > have + 1 then return {'gap', string.format('%.0f', have)} end
local skip = 0
if have then
  if have >= last then
    redis.call('ZADD', used, now, pub)
    forget_unused(pubs, used, now, ARGV[8], ARGV[9])
    return {'dup', m}
  end
  skip = math.max(0, have - (last - m))
end
local fields = {unpack(ARGV, 13)}
if skip > 0 then
  local k = 0
  for e in string.gmatch(ARGV[7], '%d+') do
    k = k + 1
    if k == skip then
      fields[#fields] = string.sub(fields[#fields], tonumber(e) + 1)
      break
    end
  end
end
local id
if ARGV[10] == '1' then
  local epoch, err = epoch_or_create(stream, {seen, KEYS[5], KEYS[6]}, ARGV[2])
  if not epoch then return err end
  id = xadd_numbered(stream, ARGV[1], epoch, m - skip, fields,
                     channel_of(KEYS[5], KEYS[6], ARGV[11], ARGV[12]))
else
  id = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
end
redis.call('HSET', pubs, pub, ARGV[6])
redis.call('ZADD', used, now, pub)
forget_unused(pubs, used, now, ARGV[8], ARGV[9])
return {'ok', skip, id}
)lua";

struct keys {
    explicit keys(const std::string& stream)
        : publishers(redis_offsets::side_key(stream, "framecast-publishers")),
          used(redis_offsets::side_key(stream, "framecast-publishers-used")) {}
    std::string publishers, used;
};

struct scripts {
    std::string attach_sha, append_sha;
};

// SCRIPT LOAD of both scripts; false (with `error` set) when Redis refused.
bool load(redisContext* c, scripts& out, std::string& error);

// What one pipelined command needs, beside the connection.
struct append_args {
    const std::string& stream;
    const std::string& seen;
    const keys& k;
    std::uint64_t keep;
    const std::string& candidate_epoch;
    bool numbered;
    const std::string& node;
    std::uint64_t origin_client;
    std::uint64_t millis;
    const options& opts;
    // serve --channels --resume: the entry's channel, numbered in these keys ("": none).
    const std::string& channels;
    const std::string& channel_use;
    std::string_view channel;
};

// Pipelines (redisAppendCommandArgv) the attach or the append of one pending item.
bool send_attach(redisContext* c, const scripts& s, const keys& k, const std::string& publisher,
                 std::uint64_t first, const options& opts);
bool send_append(redisContext* c, const scripts& s, const append_args& a,
                 const std::string& framed, std::size_t messages, const publisher_unit& unit);

// The receipt for a reply (not an error: the caller handles those). `unit` null: an attach.
publisher_receipt receipt_of(const redisReply* r, std::uint64_t origin_client,
                             const publisher_unit* unit);

}  // namespace framecast::backplane::redis_publishers
