--[[
  settle-dead-letter-3 (3 keys): ends a redrive's claim on a dead letter (see claim-dead-letter-2.lua): with
  remove = '1', deletes the letter too. Nothing happens unless the claim still holds: a letter
  stored since for the same id (dead-letter-9.lua ends claims) is never deleted by an older redrive.

  KEYS[1]  {prefix}dlq         HASH message id -> dead letter JSON
  KEYS[2]  {prefix}dlq:order   ZSET message id -> sequence
  KEYS[3]  {prefix}dlq:claims  HASH message id -> claim token
  ARGV[1]  message id
  ARGV[2]  claim token
  ARGV[3]  '1' = remove the letter, '0' = release the claim only

  Returns 1 when the claim held, else 0.
]]
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
if ARGV[3] == '1' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
