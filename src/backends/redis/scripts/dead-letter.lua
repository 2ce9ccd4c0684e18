--[[
  dead-letter: stores a dead letter; with a lease token, removes the leased message in the
  same step (and stores nothing if that lease was lost: wrong token or deadline passed).
  A later letter for the same message id replaces the earlier one and moves to the end.

  KEYS[1]  {prefix}dlq                 HASH message id -> dead letter JSON
  KEYS[2]  {prefix}dlq:order           ZSET message id -> sequence (oldest first)
  KEYS[3]  {prefix}seq                 sequence counter
  KEYS[4]  {prefix}q:<queue>:ready     ZSET (KEYS 4..8 are only used with a token)
  KEYS[5]  {prefix}q:<queue>:inflight  ZSET id -> lease deadline
  KEYS[6]  {prefix}q:<queue>:signal    LIST wake-up tokens
  KEYS[7]  {prefix}q:<queue>:body      HASH id -> encoded message
  KEYS[8]  {prefix}q:<queue>:meta      HASH id -> '<score>:<attempts>:<lease tag>'
  ARGV[1]  message id
  ARGV[2]  dead letter JSON
  ARGV[3]  id segment
  ARGV[4]  lease token ('<attempts>:<lease tag>'), '' = no lease

  Returns 1, or 0 when the lease was lost.
]]
local id = ARGV[3]
if ARGV[4] ~= '' then
  local m = redis.call('HGET', KEYS[8], id)
  local score = m and string.match(m, '^([^:]*):')
  if not score or m ~= score .. ':' .. ARGV[4] then return 0 end
  local deadline = tonumber(redis.call('ZSCORE', KEYS[5], id))
  if not deadline then return 0 end
  local t = redis.call('TIME')
  if deadline <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
    redis.call('HSET', KEYS[8], id, score .. ':' .. string.match(ARGV[4], '^(%d+)') .. ':')
    redis.call('ZREM', KEYS[5], id)
    redis.call('ZADD', KEYS[4], score, id)
    redis.call('LPUSH', KEYS[6], '1')
    redis.call('LTRIM', KEYS[6], 0, 15)
    return 0
  end
  redis.call('ZREM', KEYS[5], id)
  redis.call('HDEL', KEYS[7], id)
  redis.call('HDEL', KEYS[8], id)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
return 1
