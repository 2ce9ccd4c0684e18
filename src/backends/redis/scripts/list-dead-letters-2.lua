--[[
  list-dead-letters-2 (2 keys): the oldest dead letters first.

  KEYS[1]  {prefix}dlq        HASH message id -> dead letter JSON
  KEYS[2]  {prefix}dlq:order  ZSET message id -> sequence
  ARGV[1]  limit (-1 = all)

  Returns an array of dead letter JSON strings.
]]
local ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) < 0 and -1 or tonumber(ARGV[1]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', KEYS[1], id)
  if json then out[#out + 1] = json end
end
return out
