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
// * serve --channels --resume: every channel also numbers its own messages (docs/resume.md,
//   "Channels"). CHANNELS_KEY, a hash: channel -> its last offset, and under the field "" the
//   floor (a channel it does not hold starts at floor + 1). CHANNEL_USE_KEY, a sorted set:
//   channel -> when it was last used (Redis TIME, us). Past the channels bound the longest
//   unused ones are forgotten and the floor raised to their last offsets, so a channel never
//   reuses an offset within an epoch; the entry carries its first message's channel offset
//   ("k"). Both keys go with the epoch: a new stream starts every channel at 1.
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
local function epoch_or_create(stream, side, candidate)
  if redis.call('EXISTS', stream) == 1 then
    local epoch = stream_epoch(stream)
    if not epoch then return nil, no_epoch() end
    return epoch, false
  end
  redis.call('DEL', unpack(side))
  redis.call('XGROUP', 'CREATE', stream, 'framecast-epoch-' .. candidate, '0', 'MKSTREAM')
  return candidate, true
end
-- ch: {chans = KEY, use = KEY, name = CHANNEL, max = N}. The channel offset of the first of
-- `m` messages to `ch.name`, taken; forgets the longest unused channels past ch.max.
local function channel_number(ch, m)
  local last = tonumber(redis.call('HGET', ch.chans, ch.name))
  local first = (last or tonumber(redis.call('HGET', ch.chans, '')) or 0) + 1
  redis.call('HSET', ch.chans, ch.name, string.format('%.0f', first + m - 1))
  local t = redis.call('TIME')
  redis.call('ZADD', ch.use, tonumber(t[1]) * 1000000 + tonumber(t[2]), ch.name)
  if not last then
    local over = redis.call('ZCARD', ch.use) - ch.max
    if over > 0 then
      local gone = redis.call('ZRANGE', ch.use, 0, math.min(over, 64) - 1)
      local floor = tonumber(redis.call('HGET', ch.chans, '')) or 0
      for _, c in ipairs(gone) do
        floor = math.max(floor, tonumber(redis.call('HGET', ch.chans, c)) or 0)
      end
      redis.call('HDEL', ch.chans, unpack(gone))
      redis.call('ZREM', ch.use, unpack(gone))
      redis.call('HSET', ch.chans, '', string.format('%.0f', floor))
    end
  end
  return first
end
-- ch: nil, or the channel to number the entry in (channel_number).
local function xadd_numbered(stream, keep, epoch, m, fields, ch)
  if ch then
    table.insert(fields, 1, string.format('%.0f', channel_number(ch, m)))
    table.insert(fields, 1, 'k')
  end
  local id = redis.call('XADD', stream, 'MAXLEN', '~', keep, '0-*', 'e', epoch, unpack(fields))
  if m > 1 then
    redis.call('XSETID', stream, string.format('0-%d', tonumber(string.sub(id, 3)) + m - 1))
  end
  return id
end
)lua";

// The channel to number an entry in: nil when `name` is empty (no channels).
inline const std::string channel_functions = R"lua(
local function channel_of(chans, use, name, max)
  if name == '' then return nil end
  return {chans = chans, use = use, name = name, max = math.max(tonumber(max), 1)}
end
)lua";

// KEYS: stream, seen, channels, channel use. ARGV: keep (MAXLEN ~), candidate epoch, messages,
// node, sequence, channel ("": none), channels bound, then the entry's field/value pairs.
// Returns the new entry's ID, or "dup".
inline const std::string append_script = append_functions + channel_functions + R"lua(
local stream, seen = KEYS[1], KEYS[2]
local epoch, created = epoch_or_create(stream, {seen, KEYS[3], KEYS[4]}, ARGV[2])
if not epoch then return created end
if not created then
  local last = redis.call('HGET', seen, ARGV[4])
  if last and tonumber(last) >= tonumber(ARGV[5]) then return 'dup' end
end
redis.call('HSET', seen, ARGV[4], ARGV[5])
return xadd_numbered(stream, ARGV[1], epoch, tonumber(ARGV[3]), {unpack(ARGV, 8)},
                     channel_of(KEYS[3], KEYS[4], ARGV[6], ARGV[7]))
)lua";

// KEYS: stream, seen, channels, channel use. ARGV: candidate epoch. Returns {epoch,
// last-generated ID}, creating the stream (and its epoch) when there is none; an error beginning "FCREFUSE" when the key cannot
// be numbered (not a stream, time-based IDs, no epoch group).
inline const std::string init_script = std::string(epoch_functions) + R"lua(
local stream = KEYS[1]
if redis.call('EXISTS', stream) == 0 then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
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

// KEYS: stream, channels. ARGV: most fields read. Returns {epoch, last-generated ID, {channel,
// last offset, ...}} in one atomic step (channels: the offsets as of that ID), or {"", "0-0",
// {}} without a stream; with more fields than ARGV[1], the third is a count, not the hash.
inline const std::string channels_snapshot_script = std::string(epoch_functions) + R"lua(
local stream = KEYS[1]
if redis.call('EXISTS', stream) == 0 then return {'', '0-0', {}} end
local fields = redis.call('HLEN', KEYS[2])
local last = '0-0'
local info = redis.call('XINFO', 'STREAM', stream)
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
if fields > tonumber(ARGV[1]) then return {stream_epoch(stream) or '', last, fields} end
return {stream_epoch(stream) or '', last, redis.call('HGETALL', KEYS[2])}
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
inline std::string channels_key(const std::string& stream) {
    return side_key(stream, "framecast-channels");
}
inline std::string channel_use_key(const std::string& stream) {
    return side_key(stream, "framecast-channel-use");
}

}  // namespace framecast::backplane::redis_offsets
