--[[
  dead-letter-9 (9 keys): stores a dead letter; with a lease token, removes the leased message in the
  same step (and stores nothing if that lease was lost: wrong token or deadline passed).
  A later letter for the same message id replaces the earlier one, moves to the end and ends
  any redrive claim on it (see claim-dead-letter-2.lua).
  With ARGV[5] = '1' (the message could not be encoded: the letter holds a stand-in), the
  leased message's stored wire form is added to the letter as its `raw` field, so the
  original bytes are kept.
  (Queue keys and their contents: see enqueue-2.lua.)

  KEYS[1]  {prefix}dlq                 HASH message id -> dead letter JSON
  KEYS[2]  {prefix}dlq:order           ZSET message id -> sequence (oldest first)
  KEYS[3]  {prefix}seq                 sequence counter
  KEYS[4]  {prefix}q:<queue>:ready     ZSET (KEYS 4..8 are only used with a token)
  KEYS[5]  {prefix}q:<queue>:inflight  ZSET id -> deadline * 1024 + min(attempt, 1023)
  KEYS[6]  {prefix}q:<queue>:signal    LIST wake-up tokens
  KEYS[7]  {prefix}q:<queue>:body      HASH id -> '<order>|<encoded message>'
  KEYS[8]  {prefix}q:<queue>:tries     HASH id -> times leased
  KEYS[9]  {prefix}dlq:claims          HASH message id -> redrive claim token
  ARGV[1]  message id
  ARGV[2]  dead letter JSON
  ARGV[3]  id segment
  ARGV[4]  lease token (the inflight score it was leased with), '' = no lease
  ARGV[5]  '1' = attach the stored body as `raw` (ARGV[2] is a JSON object without one)

  Returns 1, or 0 when the lease was lost.
]]
--#include order
local SCALE = 1024
local id = ARGV[3]
local letter = ARGV[2]
if ARGV[4] ~= '' then
  local score = tonumber(redis.call('ZSCORE', KEYS[5], id))
  if not score or score ~= tonumber(ARGV[4]) then return 0 end
  local t = redis.call('TIME')
  if math.floor(score / SCALE) <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
    local attempt = score % SCALE
    if attempt == SCALE - 1 then attempt = tonumber(redis.call('HGET', KEYS[8], id)) or attempt end
    local body = redis.call('HGET', KEYS[7], id)
    redis.call('ZREM', KEYS[5], id)
    redis.call('HSET', KEYS[8], id, attempt)
    redis.call('ZADD', KEYS[4], orderOf(body), id)
    redis.call('LPUSH', KEYS[6], '1')
    redis.call('LTRIM', KEYS[6], 0, 15)
    return 0
  end
  if ARGV[5] == '1' then
    local body = redis.call('HGET', KEYS[7], id)
    if body then
      local wire = string.match(body, '^%d+|(.*)$') or body
      letter = string.sub(letter, 1, -2) .. ',"raw":' .. cjson.encode(wire) .. '}'
    end
  end
  redis.call('ZREM', KEYS[5], id)
  redis.call('HDEL', KEYS[7], id, id .. ':h')
  redis.call('HDEL', KEYS[8], id)
end
redis.call('HSET', KEYS[1], ARGV[1], letter)
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
redis.call('HDEL', KEYS[9], ARGV[1])
return 1
