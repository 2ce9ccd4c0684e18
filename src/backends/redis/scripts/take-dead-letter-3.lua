--[[
  take-dead-letter-3 (3 keys): removes and returns one dead letter (for redrive).

  KEYS[1]  {prefix}dlq        HASH message id -> dead letter JSON
  KEYS[2]  {prefix}dlq:order  ZSET message id -> sequence
  KEYS[3]  {prefix}dlq:claims HASH message id -> redrive claim token
  ARGV[1]  message id

  Returns the dead letter JSON, or false when there is none.
]]
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return json
