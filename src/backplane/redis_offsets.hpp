// serve --resume --backplane: the Redis Stream numbers the messages itself, so a message has
// the same offset on every node (docs/backplane.md, "Offsets"). Two Lua scripts, each atomic
// in Redis (one step: no other client's command runs inside it), persisted as their effects
// (an XADD with its concrete ID) in the append-only file like any other write.
//
// * IDs are "0-N": N is the offset of the entry's first message. An entry of m messages
//   moves the stream's last-generated ID on to "0-(N+m-1)" (XSETID), so the next "0-*" is
//   the next message's offset: dense, atomic, and kept by Redis across restarts.
// * The epoch is the name of a consumer group created with the stream ("framecast-epoch-"
//   EPOCH, XGROUP CREATE ... MKSTREAM, never read from): it lives and dies with the stream, so
//   a deleted stream takes its epoch along and the next node to use the key starts a new one
//   (it proposes a random candidate). Every entry also carries its epoch ("e"), so a reader
//   notices a recreated stream on its first entry.
// * A retried append (the reply was lost with the connection) must not take offsets twice: the
//   last sequence number appended per node is kept in a hash beside the stream (SEEN_KEY), and
//   an append it has seen is answered "dup" and not repeated.
#pragma once

#include <string>

namespace framecast::backplane::redis_offsets {

// Both scripts start with these: the epoch is the name of the stream's framecast-epoch group.
inline constexpr const char* epoch_functions = R"lua(
local function stream_epoch(stream)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    if string.sub(g[2], 1, 16) == 'framecast-epoch-' then return string.sub(g[2], 17) end
  end
  return nil
end
local function no_epoch()
  return redis.error_reply('FCREFUSE the stream has no framecast-epoch group: it was not written by serve --resume')
end
)lua";

// The appending scripts (this one's and the publishers' in redis_publishers.hpp) share these.
// epoch_or_create: the stream's epoch and false, or `candidate` and true when it made the
// stream (clearing `seen`, which belonged to a lost one); nil and an error reply when the
// stream cannot be numbered. xadd_numbered: appends an entry of `m` messages at the next
// offset ("0-*"), moving the last ID past its other messages.
inline const std::string append_functions = std::string(epoch_functions) + R"lua(
local function epoch_or_create(stream, seen, candidate)
  if redis.call('EXISTS', stream) == 1 then
    local epoch = stream_epoch(stream)
    if not epoch then return nil, no_epoch() end
    return epoch, false
  end
  redis.call('DEL', seen)
  redis.call('XGROUP', 'CREATE', stream, 'framecast-epoch-' .. candidate, '0', 'MKSTREAM')
  return candidate, true
end
local function xadd_numbered(stream, keep, epoch, m, fields)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', keep, '0-*', 'e', epoch, unpack(fields))
  if m > 1 then
    redis.call('XSETID', stream, string.format('0-%d', tonumber(string.sub(id, 3)) + m - 1))
  end
  return id
end
)lua";

// KEYS: stream, seen. ARGV: keep (MAXLEN ~), candidate epoch, messages, node, sequence, then
// the entry's field/value pairs. Returns the new entry's ID, or "dup".
inline const std::string append_script = append_functions + R"lua(
local stream, seen = KEYS[1], KEYS[2]
local epoch, created = epoch_or_create(stream, seen, ARGV[2])
if not epoch then return created end
if not created then
  local last = redis.call('HGET', seen, ARGV[4])
  if last and tonumber(last) >= tonumber(ARGV[5]) then return 'dup' end
end
redis.call('HSET', seen, ARGV[4], ARGV[5])
return xadd_numbered(stream, ARGV[1], epoch, tonumber(ARGV[3]), {unpack(ARGV, 6)})
)lua";

// KEYS: stream, seen. ARGV: candidate epoch. Returns {epoch, last-generated ID}, creating the
// stream (and its epoch) when there is none; an error beginning "FCREFUSE" when the key cannot
// be numbered (not a stream, time-based IDs, no epoch group).
inline const std::string init_script = std::string(epoch_functions) + R"lua(
local stream = KEYS[1]
if redis.call('EXISTS', stream) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('XGROUP', 'CREATE', stream, 'framecast-epoch-' .. ARGV[1], '0', 'MKSTREAM')
  return {ARGV[1], '0-0'}
end
local t = redis.call('TYPE', stream)['ok']
if t ~= 'stream' then
  return redis.error_reply('FCREFUSE the key holds a ' .. t .. ', not a stream')
end
local info = redis.call('XINFO', 'STREAM', stream)
local last = '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
if string.sub(last, 1, 2) ~= '0-' then
  return redis.error_reply('FCREFUSE the stream has time-based entry IDs (written by nodes without --resume); use another key, or delete this one')
end
local epoch = stream_epoch(stream)
if not epoch then return no_epoch() end
return {epoch, last}
)lua";

// The hash of last sequence numbers per node, in the stream's hash slot (Redis Cluster: both
// keys of a script must live on one shard).
inline std::string side_key(const std::string& stream, const char* name) {
    if (stream.find('{') == std::string::npos && stream.find('}') == std::string::npos) {
        return "{" + stream + "}:" + name;
    }
    return stream + ":" + name;
}
inline std::string seen_key(const std::string& stream) { return side_key(stream, "framecast-seen"); }

}  // namespace framecast::backplane::redis_offsets
