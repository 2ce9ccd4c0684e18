--[[
  purge-dead-letters-3 (3 keys): removes every dead letter.

  KEYS[1]  {prefix}dlq        HASH message id -> dead letter JSON
  KEYS[2]  {prefix}dlq:order  ZSET message id -> sequence
  KEYS[3]  {prefix}dlq:claims HASH message id -> redrive claim token
  (no ARGV)

  Returns how many were removed.
]]
local n = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return n
