--[[
  get-version: a kept version record of a document, or false when it was compacted or never
  written. Compacted versions may still have their hash fields for a while (commit-document
  deletes them in batches), so the oldest kept version decides.

  KEYS[1]  {prefix}s:doc:<id>   HASH v=current version, oldest=oldest kept version
  KEYS[2]  {prefix}s:ver:<id>   HASH version -> version record JSON
  ARGV[1]  version

  Returns the record JSON, or false.
]]
local head = redis.call('HMGET', KEYS[1], 'v', 'oldest')
local wanted = tonumber(ARGV[1])
if not head[1] or wanted < tonumber(head[2]) or wanted > tonumber(head[1]) then return false end
return redis.call('HGET', KEYS[2], ARGV[1])
