--[[
  get-history: a range of the kept history entries of a document, oldest first. Reads only the
  entries it returns (HMGET of their versions), whatever the depth of the history.

  KEYS[1]  {prefix}s:doc:<id>   HASH v=current version, oldest=oldest kept version
  KEYS[2]  {prefix}s:hist:<id>  HASH version -> history entry JSON
  ARGV[1]  limit: at most this many entries (-1 = no limit)
  ARGV[2]  before: only versions below it ('' = none)
  ARGV[3]  after: only versions above it ('' = none)
  The limit keeps the newest entries of the range, or the oldest when only `after` is given
  (the page right after it).

  Returns an array of history entry JSON strings (empty when the document does not exist).
]]
local head = redis.call('HMGET', KEYS[1], 'v', 'oldest')
local v = tonumber(head[1])
if not v then return {} end
local from = tonumber(head[2]) or 1
local to = v
local limit = tonumber(ARGV[1])
local before = tonumber(ARGV[2])
local after = tonumber(ARGV[3])
if after then from = math.max(from, after + 1) end
if before then to = math.min(to, before - 1) end
if limit >= 0 then
  if after and not before then to = math.min(to, from + limit - 1)
  else from = math.max(from, to - limit + 1) end
end
local out = {}
local fields = {}
for ver = from, to do
  fields[#fields + 1] = ver
  if #fields == 500 or ver == to then
    local got = redis.call('HMGET', KEYS[2], unpack(fields))
    for _, json in ipairs(got) do
      if json then out[#out + 1] = json end
    end
    fields = {}
  end
end
return out
