--[[
  get-history: the kept history entries of a document, oldest first.

  KEYS[1]  {prefix}s:doc:<id>   HASH v=current version, oldest=oldest kept version
  KEYS[2]  {prefix}s:hist:<id>  HASH version -> history entry JSON
  ARGV[1]  limit: keep only the most recent `limit` entries (0 = all kept)

  Returns an array of history entry JSON strings (empty when the document does not exist).
]]
local v = tonumber(redis.call('HGET', KEYS[1], 'v'))
if not v then return {} end
local from = tonumber(redis.call('HGET', KEYS[1], 'oldest')) or 1
local limit = tonumber(ARGV[1])
if limit > 0 then from = math.max(from, v - limit + 1) end
local out = {}
local fields = {}
for ver = from, v do
  fields[#fields + 1] = ver
  if #fields == 500 or ver == v then
    local got = redis.call('HMGET', KEYS[2], unpack(fields))
    for _, json in ipairs(got) do
      if json then out[#out + 1] = json end
    end
    fields = {}
  end
end
return out
