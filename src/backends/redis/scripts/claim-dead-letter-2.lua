--[[
  claim-dead-letter-2 (2 keys): claims one dead letter for a redrive, leaving it stored (see
  Transport.claimDeadLetter): the redrive enqueues the message, then settle-dead-letter-3.lua
  removes the letter, so a failure in between never loses it.

  KEYS[1]  {prefix}dlq         HASH message id -> dead letter JSON
  KEYS[2]  {prefix}dlq:claims  HASH message id -> claim token '<until ms>:<nonce>'
  ARGV[1]  message id
  ARGV[2]  claim duration (ms)
  ARGV[3]  nonce (unique per claim)

  Returns false when there is no such letter; {'claimed'} while another claim on it holds;
  else {dead letter JSON, claim token}.
]]
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  local untilMs = tonumber(string.match(held, '^(%d+):'))
  if untilMs and untilMs > now then return {'claimed'} end
end
local token = string.format('%d', now + tonumber(ARGV[2])) .. ':' .. ARGV[3]
redis.call('HSET', KEYS[2], ARGV[1], token)
return {json, token}
