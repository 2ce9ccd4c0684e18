--[[
  enqueue: adds a batch of messages to their queues atomically and in order.

  KEYS[1]  {prefix}seq          sequence counter giving FIFO order inside a priority
  KEYS[2]  {prefix}recipients   SET of registered recipient queues
  ARGV[1]  prefix               'concord:{ns}:'; per-queue keys are derived from it (all in the
                                {ns} hash slot, so a cluster keeps them together):
                                  {prefix}q:<queue>:ready     ZSET id -> (10 - priority) * 2^40 + seq
                                  {prefix}q:<queue>:delayed   ZSET id -> visibleAt (server ms)
                                  {prefix}q:<queue>:inflight  ZSET id -> lease deadline
                                  {prefix}q:<queue>:signal    LIST wake-up tokens for blocked consumers
                                  {prefix}q:<queue>:body      HASH id -> encoded message
                                  {prefix}q:<queue>:meta      HASH id -> '<score>:<attempts>:<lease tag>'
                                    score: its ready score, kept when it is requeued
                                    attempts: times leased; lease tag: '' unless leased
                                    (a lease token is '<attempts>:<tag>')
                                  {prefix}dd:<id>             STRING first body, PX = dedupe window
  ARGV[2]  n                    number of entries
  then 8 ARGV per entry:
    queue segment (escaped), queue name, id segment (escaped), encoded message,
    priority 0..10, delay ms (0 = visible now), requireRecipient (1/0), dedupe window ms (0 = none)

  Returns one item per entry: 1 = enqueued, 2 = no_recipient, or the first body (string) = duplicate.
]]
local prefix = ARGV[1]
local n = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local SIGNAL_CAP = 16
local CHUNK = 4000

-- Multi-field commands in chunks (Lua's unpack has a stack limit); `args` is a flat list.
local function bulk(cmd, key, args)
  for i = 1, #args, CHUNK do
    redis.call(cmd, key, unpack(args, i, math.min(i + CHUNK - 1, #args)))
  end
end

local seq = redis.call('INCRBY', KEYS[1], n) - n
local out = {}
local queues = {}
local order = {}
local recipient = {}

for i = 0, n - 1 do
  local base = 3 + i * 8
  local qseg = ARGV[base]
  local queue = ARGV[base + 1]
  local idseg = ARGV[base + 2]
  local body = ARGV[base + 3]
  local priority = tonumber(ARGV[base + 4])
  local delay = tonumber(ARGV[base + 5])
  local dedupe = tonumber(ARGV[base + 7])
  local result = nil

  if dedupe > 0 then
    local first = redis.call('GET', prefix .. 'dd:' .. idseg)
    if first then result = first end
  end
  if result == nil and ARGV[base + 6] == '1' then
    if recipient[queue] == nil then recipient[queue] = redis.call('SISMEMBER', KEYS[2], queue) == 1 end
    if not recipient[queue] then result = 2 end
  end
  if result == nil then
    if dedupe > 0 then
      redis.call('SET', prefix .. 'dd:' .. idseg, body, 'PX', dedupe)
    end
    local q = queues[qseg]
    if q == nil then
      q = { ids = {}, body = {}, meta = {}, ready = {}, delayed = {}, count = 0 }
      queues[qseg] = q
      order[#order + 1] = qseg
    end
    seq = seq + 1
    local score = (10 - priority) * 1099511627776 + seq
    q.ids[#q.ids + 1] = idseg
    q.body[#q.body + 1] = idseg
    q.body[#q.body + 1] = body
    q.meta[#q.meta + 1] = idseg
    q.meta[#q.meta + 1] = string.format('%.0f:0:', score)
    if delay > 0 then
      q.delayed[#q.delayed + 1] = now + delay
      q.delayed[#q.delayed + 1] = idseg
    else
      q.ready[#q.ready + 1] = score
      q.ready[#q.ready + 1] = idseg
    end
    q.count = q.count + 1
    result = 1
  end
  out[#out + 1] = result
end

for _, qseg in ipairs(order) do
  local q = queues[qseg]
  local k = prefix .. 'q:' .. qseg .. ':'
  bulk('HSET', k .. 'body', q.body)
  local added = 0
  for i = 1, #q.meta, CHUNK do
    added = added + redis.call('HSET', k .. 'meta', unpack(q.meta, i, math.min(i + CHUNK - 1, #q.meta)))
  end
  if added < #q.ids then
    -- Some id was enqueued again without dedupe: it replaces the earlier message, so drop
    -- the earlier one's place in the delayed and leased indexes (ZADD below re-scores ready).
    for i = 1, #q.ids, CHUNK do
      local part = { unpack(q.ids, i, math.min(i + CHUNK - 1, #q.ids)) }
      redis.call('ZREM', k .. 'delayed', unpack(part))
      redis.call('ZREM', k .. 'inflight', unpack(part))
      redis.call('ZREM', k .. 'ready', unpack(part))
    end
  end
  if #q.ready > 0 then bulk('ZADD', k .. 'ready', q.ready) end
  if #q.delayed > 0 then bulk('ZADD', k .. 'delayed', q.delayed) end
  -- Wake blocked consumers: a token per message, at most SIGNAL_CAP waiting in the list.
  -- Delayed messages signal too, so a waiting consumer re-computes when to look again.
  local tokens = {}
  for j = 1, math.min(q.count, SIGNAL_CAP) do tokens[j] = '1' end
  redis.call('LPUSH', k .. 'signal', unpack(tokens))
  redis.call('LTRIM', k .. 'signal', 0, SIGNAL_CAP - 1)
end

return out
