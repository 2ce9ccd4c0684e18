--[[
  get-document: the current version record of a document.

  KEYS[1]  {prefix}s:doc:<id>   HASH v=current version, oldest=oldest kept version
  KEYS[2]  {prefix}s:ver:<id>   HASH version -> version record JSON
  (no ARGV)

  Returns the record JSON, or false when the document does not exist.
]]
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return false end
return redis.call('HGET', KEYS[2], v)
