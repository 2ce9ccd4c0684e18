--[[
  enqueue-2 (2 keys): adds a batch of messages to their queues atomically and in order.

  KEYS[1]  {prefix}seq          sequence counter giving FIFO order inside a priority
  KEYS[2]  {prefix}recipients   SET of registered recipient queues
  ARGV[1]  prefix               'concord:{ns}:'; per-queue keys are derived from it (all in the
                                {ns} hash slot, so a cluster keeps them together):
                                  {prefix}q:<queue>:ready     ZSET id -> order
                                  {prefix}q:<queue>:delayed   ZSET id -> visibleAt (server ms)
                                  {prefix}q:<queue>:inflight  ZSET id -> deadline * 1024 + min(attempt, 1023)
                                                              (that score is the lease token)
                                  {prefix}q:<queue>:signal    LIST wake-up tokens for blocked consumers
                                  {prefix}q:<queue>:body      HASH id -> '<order>|<encoded message>'
                                  {prefix}q:<queue>:tries     HASH id -> times leased, for a message
                                                              that came back after a lease (and
                                                              while leased, from attempt 1023 on);
                                                              empty while nothing came back, so a
                                                              lease looks there only when it is not
                                  {prefix}q:<queue>:list      LIST encoded messages of a reply inbox
                                                              (queue '_inbox.*': no order, no leases;
                                                              expires a day after the reply that
                                                              found it empty, so the inbox of a bus
                                                              that died goes away)
                                  {prefix}dd:<id>             STRING first body, PX = dedupe window
                                order = (10 - priority) * 2^40 + seq: strict priority, FIFO inside
                                one; a message that comes back keeps its order (its place).
                                Scores are handed to Redis as digit strings: Redis 7.0 formats
                                every Lua number argument and every score it replies with through
                                printf, which costs more than the sorted-set work itself.
                                The hot path touches only body, ready and inflight: enqueue writes
                                a body and a ready entry, lease pops it and writes an inflight
                                entry, ack removes both.
  ARGV[2]  n                    number of entries
  ARGV[3]  m                    number of topic channels entries publish on, then m channel names
                                ({prefix}topic:<message type>, what subscribe listens on; a
                                subscriber of '*' listens on the pattern {prefix}topic:* and
                                shows itself on the plain channel {prefix}all-topics)
  then 4 ARGV per entry (few: passing an argument costs Redis about as much as a small command):
    queue name, or '' for the queue of the entry before (the first entry always names one)
    id segment (escaped, as in key names)
    encoded message (stored and published as it is)
    meta: '<priority>[r][p<j>][/<delayMs>/<dedupeWindowMs>]', e.g. '5', '5rp1', '0r/250/0':
          priority 0..10; r = refuse unless the queue is a registered recipient; p<j> = once
          enqueued, PUBLISH the encoded message on channel j (1-based, of the m above), at most
          once and only when somebody may observe it; delay and dedupe window default to 0

  then, optionally (a reply and the requests it answers, in one atomic step):
    a                           number of leases to ack once the entries are enqueued (0 or absent: none)
    queue segment (escaped)     the queue those leases are of
    then the acks, to the end, grouped by lease token as for ack-many-5.lua

  Returns one item per entry: 1 = enqueued, 2 = no_recipient, or the first body (string) = duplicate;
  then, when a > 0, a list of a ack flags (1, or 0 when that lease was lost).
]]
--#include order
--#include ack
local prefix = ARGV[1]
local n = tonumber(ARGV[2])
local m = tonumber(ARGV[3])
local start = 4 + m
local now = nil -- server ms, read only when some entry is delayed
local SIGNAL_CAP = 16
-- An inbox list nobody popped for this long belongs to a bus that is gone: Redis drops it.
local INBOX_TTL_MS = 86400000
local CHUNK = 4000

-- Multi-field commands in chunks (Lua's unpack has a stack limit); `args` is a flat list.
-- Runs `cmd key args...` in chunks of CHUNK arguments; returns the last chunk's reply.
local function bulk(cmd, key, args)
  local reply
  for i = 1, #args, CHUNK do
    reply = redis.call(cmd, key, unpack(args, i, math.min(i + CHUNK - 1, #args)))
  end
  return reply
end

local seq = nil -- taken (n at once) on the first entry for a queue: inbox entries need none
local out = {}
local queues = {}
local order = {}
local recipient = {}

-- A queue name as it appears in key names (what keySegment does on the client).
local function segment(name)
  if not string.find(name, '[%%:]') then return name end
  return (string.gsub(string.gsub(name, '%%', '%%25'), ':', '%%3A'))
end

-- Reply inboxes (queues named '_inbox.*', one consumer each, at most once, no priority order):
-- a plain list {prefix}q:<queue>:list its owner pops with BLMPOP, nothing else.
local inboxes = {}

-- Per channel j, whether a publication there may be observed (a subscriber of it, or of every
-- topic in this namespace): looked up once per call, the first time an entry publishes. A
-- publication nobody can observe is never made (it would still be replicated and written to the
-- AOF). A subscriber of every topic listens on a pattern, which NUMSUB does not count, and NUMPAT
-- counts every pattern on the server (another tenant's PSUBSCRIBE would make every enqueue
-- publish): so it also subscribes to the plain channel {prefix}all-topics, counted here.
local listened = nil
local function listeners()
  local out = {}
  local counts = redis.call('PUBSUB', 'NUMSUB', prefix .. 'all-topics', unpack(ARGV, 4, 3 + m))
  local all = counts[2] > 0
  for j = 1, m do out[j] = all or counts[2 * j + 2] > 0 end
  return out
end

local queue, qseg, inbox
for i = 0, n - 1 do
  local base = start + i * 4
  if ARGV[base] ~= '' then
    queue = ARGV[base]
    qseg = segment(queue)
    inbox = string.sub(queue, 1, 7) == '_inbox.'
  end
  local idseg = ARGV[base + 1]
  local meta = ARGV[base + 3]
  local priority, required, delay, dedupe
  local p, r, channel, d, w = string.match(meta, '^(%d+)(r?)p?(%d*)/?(%d*)/?(%d*)$')
  if p == nil then return redis.error_reply('ERR enqueue: bad entry meta ' .. meta) end
  local priority, required = tonumber(p), r == 'r'
  local delay, dedupe = tonumber(d) or 0, tonumber(w) or 0
  local result = nil

  if dedupe > 0 then
    local original = redis.call('GET', prefix .. 'dd:' .. idseg)
    if original then result = original end
  end
  if result == nil and required then
    if recipient[queue] == nil then recipient[queue] = redis.call('SISMEMBER', KEYS[2], queue) == 1 end
    if not recipient[queue] then result = 2 end
  end
  if result == nil then
    local body = ARGV[base + 2]
    if dedupe > 0 then
      redis.call('SET', prefix .. 'dd:' .. idseg, body, 'PX', dedupe)
    end
    if inbox then
      local list = inboxes[qseg]
      if list == nil then
        list = {}
        inboxes[qseg] = list
      end
      list[#list + 1] = body
    else
      local q = queues[qseg]
      if q == nil then
        q = { ids = {}, body = {}, ready = {}, delayed = {} }
        queues[qseg] = q
        order[#order + 1] = qseg
      end
      if seq == nil then seq = redis.call('INCRBY', KEYS[1], n) - n end
      seq = seq + 1
      local place = (10 - priority) * 1099511627776 + seq
      local nb = #q.body
      q.ids[#q.ids + 1] = idseg
      q.body[nb + 1] = idseg
      local placed = string.format('%.0f', place)
      q.body[nb + 2] = placed .. '|' .. body
      -- Numbers go to redis.call as they are: exact below 2^53.
      if delay > 0 then
        if now == nil then
          local t = redis.call('TIME')
          now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        end
        local nd = #q.delayed
        q.delayed[nd + 1] = now + delay
        q.delayed[nd + 2] = idseg
      else
        local nr = #q.ready
        q.ready[nr + 1] = placed
        q.ready[nr + 2] = idseg
      end
    end
    result = 1
    if channel ~= '' then
      local j = tonumber(channel)
      if listened == nil then listened = listeners() end
      if listened[j] then redis.call('PUBLISH', ARGV[3 + j], body) end
    end
  end
  out[#out + 1] = result
end

for qseg, list in pairs(inboxes) do
  local key = prefix .. 'q:' .. qseg .. ':list'
  local length = bulk('RPUSH', key, list)
  -- A list these pushes created gets its expiry; one that already held replies has it already
  -- (a live requester empties its inbox as replies arrive, so that is rare, and costs a call).
  if length == #list then redis.call('PEXPIRE', key, INBOX_TTL_MS) end
end

for _, qseg in ipairs(order) do
  local q = queues[qseg]
  local k = prefix .. 'q:' .. qseg .. ':'
  local added = 0
  for i = 1, #q.body, CHUNK do
    added = added + redis.call('HSET', k .. 'body', unpack(q.body, i, math.min(i + CHUNK - 1, #q.body)))
  end
  if added < #q.ids then
    -- Some id was enqueued again without dedupe: it replaces the earlier message, so drop
    -- the earlier one's place in every index and its lease (ZADD below re-scores ready).
    for i = 1, #q.ids, CHUNK do
      local part = { unpack(q.ids, i, math.min(i + CHUNK - 1, #q.ids)) }
      redis.call('ZREM', k .. 'delayed', unpack(part))
      redis.call('ZREM', k .. 'inflight', unpack(part))
      redis.call('ZREM', k .. 'ready', unpack(part))
      redis.call('HDEL', k .. 'tries', unpack(part))
    end
  end
  if #q.ready > 0 then bulk('ZADD', k .. 'ready', q.ready) end
  if #q.delayed > 0 then bulk('ZADD', k .. 'delayed', q.delayed) end
  -- Wake blocked consumers: a token per message, at most SIGNAL_CAP waiting in the list.
  -- Delayed messages signal too, so a waiting consumer re-computes when to look again.
  local tokens = {}
  for j = 1, math.min(#q.ids, SIGNAL_CAP) do tokens[j] = '1' end
  if redis.call('LPUSH', k .. 'signal', unpack(tokens)) > SIGNAL_CAP then
    redis.call('LTRIM', k .. 'signal', 0, SIGNAL_CAP - 1)
  end
end

local acksAt = start + n * 4
local a = tonumber(ARGV[acksAt] or '0')
if a > 0 then
  if now == nil then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  local k = prefix .. 'q:' .. ARGV[acksAt + 1] .. ':'
  local keys = { ready = k .. 'ready', inflight = k .. 'inflight', signal = k .. 'signal', body = k .. 'body', tries = k .. 'tries' }
  out[#out + 1] = ackLeases(keys, now, acksAt + 2, #ARGV)
end
return out
