--[[
  commit-document: compare-and-swap commit of one document version, all in one atomic step:
  check the current version (and the fence), write the version record and its history entry,
  compact versions beyond historyLimit, bump the store revision, append a change-feed event
  and publish a wake-up carrying the event. Nothing is written when a check fails.

  KEYS[1]  {prefix}s:doc:<id>     HASH v=current version, oldest=oldest kept version,
                                  swept=lowest version whose fields may still exist
  KEYS[2]  {prefix}s:ver:<id>     HASH version -> version record JSON (content, metadata, dates)
  KEYS[3]  {prefix}s:hist:<id>    HASH version -> history entry JSON
  KEYS[4]  {prefix}s:docs         HASH documentId -> 'version:updatedAtMs'
  KEYS[5]  {prefix}s:rev          store revision counter (change-feed cursor)
  KEYS[6]  {prefix}s:feed         STREAM change feed, entry id = '<revision>-0'
  KEYS[7]  {prefix}s:stats        HASH of counters (not touched here; see Counters below)
  KEYS[8]  {prefix}s:fence:<key>  fencing counter of the lock, or any key when no fence
  ARGV[1]  documentId
  ARGV[2]  expected version, '' = the document must not exist
  ARGV[3]  new version
  ARGV[4]  version record JSON
  ARGV[5]  history entry JSON
  ARGV[6]  historyLimit (at least the current version is always kept)
  ARGV[7]  fence token, '' = no fence
  ARGV[8]  feed MAXLEN (approximate)
  ARGV[9]  action
  ARGV[10] actor
  ARGV[11] timestamp (epoch ms)
  ARGV[12] wake-up channel
  ARGV[13] updatedAt (epoch ms)
  ARGV[14] change event JSON without its revision; the wake-up carries '<revision> <json>' so a
           watcher that is up to date needs no stream read

  Returns { 'ok', revision } or { reason, current record JSON or false },
  reason one of 'exists', 'not_found', 'conflict', 'fenced'.

  Counters: every commit (document or workflow) bumps s:rev once, and a document commit adds
  exactly one to its document's version, so the store's statistics need no counter here:
  changes = rev, sum of current versions = rev - workflow writes (counted by commit-workflow).

  Compaction: versions below 'oldest' are gone for every reader (get-history, get-version
  start there). Their hash fields are deleted in batches, when 'oldest' crosses a multiple of
  SWEEP, instead of two HDELs on every commit.
]]
local SWEEP = 64
local head = redis.call('HMGET', KEYS[1], 'v', 'oldest', 'swept')
local current = head[1]
local function currentRecord()
  if not current then return false end
  return redis.call('HGET', KEYS[2], current)
end
if ARGV[7] ~= '' and redis.call('GET', KEYS[8]) ~= ARGV[7] then
  return { 'fenced', currentRecord() }
end
if ARGV[2] == '' then
  if current then return { 'exists', currentRecord() } end
else
  if not current then return { 'not_found', false } end
  if current ~= ARGV[2] then return { 'conflict', currentRecord() } end
end
local v = tonumber(ARGV[3])
local oldest = tonumber(head[2] or v)
local swept = tonumber(head[3] or oldest)
local limit = math.max(1, tonumber(ARGV[6]))
local keep = math.max(oldest, v - limit + 1)
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
if math.floor(keep / SWEEP) > math.floor(oldest / SWEEP) and swept < keep then
  local fields = {}
  for old = swept, keep - 1 do
    fields[#fields + 1] = old
    if #fields == 500 or old == keep - 1 then
      redis.call('HDEL', KEYS[2], unpack(fields))
      redis.call('HDEL', KEYS[3], unpack(fields))
      fields = {}
    end
  end
  swept = keep
end
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'oldest', keep, 'swept', swept)
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3] .. ':' .. ARGV[13])

local rev = redis.call('INCR', KEYS[5])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[8], rev .. '-0',
  'k', 'document', 'i', ARGV[1], 'v', ARGV[3], 'a', ARGV[9], 'u', ARGV[10], 't', ARGV[11])
redis.call('PUBLISH', ARGV[12], rev .. ' ' .. ARGV[14])
return { 'ok', rev }
