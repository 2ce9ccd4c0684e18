#!lua name=concord_v1
--[[
  concord_v1: the published operations of Concord's wire protocol, major version 1
  (docs/PROTOCOL.md is the reference). A client in any language calls them by name:

    FCALL concord_v1_<op> 1 concord:{<namespace>}:protocol arg...

  KEYS[1] is always the namespace's protocol key: every other key of the namespace is derived
  from it (its prefix `concord:{<namespace>}:`; the braces are a Redis Cluster hash tag, so every
  key of a namespace lives in one slot and one function may touch any of them).

  Every function first checks the namespace's protocol version (the string at KEYS[1]): absent
  = a namespace no one has used with a versioned client yet, so it is set to '1'; '1' = proceed;
  anything else = an error `CONCORD_PROTOCOL ...` and nothing is read or written.

  They operate on exactly the keys and stored forms Concord's own TypeScript transport uses
  (src/backends/redis/scripts/*.lua, which stay internal and may change shape between releases;
  these calls keep their meaning for as long as the major version is 1). The rules shared with
  those scripts are copied below, on purpose: a function library cannot include files.

  Functions are global per Redis server: this library is loaded with FUNCTION LOAD REPLACE by the
  TypeScript transport when it connects (only when the loaded code differs and is not of a newer
  REVISION); concord_v1_protocol reports the REVISION loaded.
]]

local MAJOR = '1'
-- Bumped whenever this file changes; a transport never replaces a library of a higher revision.
local REVISION = 2

local SCALE = 1024            -- inflight score = deadline * 1024 + min(attempt, 1023)
local SIGNAL_CAP = 16         -- wake-up tokens kept per queue
local INBOX_TTL_MS = 86400000 -- an inbox list nobody popped for a day belongs to a bus that is gone
local MAX_ROUND = 1000        -- most messages one lease takes
local MAX_WIRE_BYTES = 1114112
local REASONS = { recipient_not_found = true, max_attempts = true, expired = true, malformed = true }

local function fail(message)
  error(redis.error_reply(message))
end

-- The namespace's key prefix, after checking its protocol version (see the header).
local function namespace(keys)
  local pkey = keys[1]
  if type(pkey) ~= 'string' or string.sub(pkey, -9) ~= ':protocol' or string.sub(pkey, 1, 8) ~= 'concord:' then
    fail('CONCORD_USAGE KEYS[1] must be the protocol key concord:{<namespace>}:protocol, got ' .. tostring(pkey))
  end
  local version = redis.call('GET', pkey)
  if not version then
    redis.call('SET', pkey, MAJOR)
  elseif version ~= MAJOR then
    fail('CONCORD_PROTOCOL namespace ' .. string.sub(pkey, 1, -10) .. ' speaks Concord wire protocol ' .. version ..
      '; the concord_v1 functions speak protocol ' .. MAJOR .. ': use a client and functions of major version ' .. version)
  end
  return string.sub(pkey, 1, -9)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A name as one `:`-separated key segment: '%' -> '%25', ':' -> '%3A' (what keySegment does).
local function segment(name)
  if not string.find(name, '[%%:]') then return name end
  return (string.gsub(string.gsub(name, '%%', '%%25'), ':', '%%3A'))
end

local function unsegment(seg)
  if not string.find(seg, '%%') then return seg end
  return (string.gsub(string.gsub(seg, '%%3A', ':'), '%%25', '%%'))
end

local function name_arg(value, what)
  if type(value) ~= 'string' or value == '' or #value > 1024 or string.find(value, '[%z\1-\31]') then
    fail('CONCORD_USAGE ' .. what .. ' must be a non-empty name without control characters, got ' .. tostring(value))
  end
  return value
end

local function int_arg(value, what, min, max)
  local n = tonumber(value)
  if n == nil or n ~= math.floor(n) or n < min or (max ~= nil and n > max) then
    fail('CONCORD_USAGE ' .. what .. ' must be an integer ' .. min .. '..' .. (max or 'inf') .. ', got ' .. tostring(value))
  end
  return n
end

local function queue_keys(prefix, queue)
  local k = prefix .. 'q:' .. segment(queue) .. ':'
  return {
    ready = k .. 'ready', delayed = k .. 'delayed', inflight = k .. 'inflight',
    signal = k .. 'signal', body = k .. 'body', tries = k .. 'tries', list = k .. 'list',
  }
end

-- A message's order from its stored body '<order>|<message>', as digits ('0' when damaged).
local function order_of(body)
  return (body and string.match(body, '^(%d+)|')) or '0'
end

local function signal(k)
  redis.call('LPUSH', k.signal, '1')
  redis.call('LTRIM', k.signal, 0, SIGNAL_CAP - 1)
end

-- Puts a message whose lease lapsed back in ready under its own order, its attempts remembered.
local function lapse(k, id, attempt)
  if attempt == SCALE - 1 then attempt = tonumber(redis.call('HGET', k.tries, id)) or attempt end
  local body = redis.call('HGET', k.body, id)
  redis.call('ZREM', k.inflight, id)
  redis.call('HSET', k.tries, id, attempt)
  redis.call('ZADD', k.ready, order_of(body), id)
  signal(k)
end

-- The held lease of `id` (its inflight score), or nil when the token is not the current one.
-- A lease whose deadline passed is lost: the message is made visible again, and nil returned.
local function held(k, id, token, now)
  local score = tonumber(redis.call('ZSCORE', k.inflight, id))
  if not score or score ~= tonumber(token) then return nil end
  if math.floor(score / SCALE) <= now then
    lapse(k, id, score % SCALE)
    return nil
  end
  return score
end

-- A wire form handed in by a client: a JSON object of at most MAX_WIRE_BYTES with a string id.
local function wire_arg(wire)
  if type(wire) ~= 'string' or #wire > MAX_WIRE_BYTES then
    fail('CONCORD_USAGE the message must be a JSON text of at most ' .. MAX_WIRE_BYTES .. ' bytes, got ' .. (type(wire) == 'string' and (#wire .. ' bytes') or tostring(wire)))
  end
  local ok, m = pcall(cjson.decode, wire)
  if not ok or type(m) ~= 'table' or type(m.id) ~= 'string' or m.id == '' then
    fail('CONCORD_USAGE the message must be a JSON object with a non-empty string id (the wire form, schema/message.schema.json)')
  end
  return m
end

local function enqueue_one(prefix, queue, wire, m, delay, dedupe, required)
  local priority = m.priority
  if type(priority) ~= 'number' or priority ~= math.floor(priority) or priority < 0 or priority > 10 then
    fail('CONCORD_USAGE the message priority must be an integer 0..10, got ' .. tostring(priority))
  end
  local idseg = segment(m.id)
  if dedupe > 0 then
    local original = redis.call('GET', prefix .. 'dd:' .. idseg)
    if original then return { 'duplicate', original } end
  end
  if required and redis.call('SISMEMBER', prefix .. 'recipients', queue) == 0 then return { 'no_recipient' } end
  if dedupe > 0 then redis.call('SET', prefix .. 'dd:' .. idseg, wire, 'PX', dedupe) end
  local k = queue_keys(prefix, queue)
  if string.sub(queue, 1, 7) == '_inbox.' then
    if redis.call('RPUSH', k.list, wire) == 1 then redis.call('PEXPIRE', k.list, INBOX_TTL_MS) end
    return { 'enqueued' }
  end
  local seq = redis.call('INCR', prefix .. 'seq')
  local placed = string.format('%.0f', (10 - priority) * 1099511627776 + seq)
  if redis.call('HSET', k.body, idseg, placed .. '|' .. wire) == 0 then
    -- The id was enqueued again without dedupe: it replaces the earlier message everywhere.
    redis.call('ZREM', k.delayed, idseg)
    redis.call('ZREM', k.inflight, idseg)
    redis.call('ZREM', k.ready, idseg)
    redis.call('HDEL', k.tries, idseg)
  end
  if delay > 0 then
    redis.call('ZADD', k.delayed, now_ms() + delay, idseg)
  else
    redis.call('ZADD', k.ready, placed, idseg)
  end
  signal(k)
  return { 'enqueued' }
end

-- ---------------------------------------------------------------------------------- functions

-- concord_v1_protocol: () -> { major, revision }
redis.register_function('concord_v1_protocol', function(keys, args)
  namespace(keys)
  return { tonumber(MAJOR), REVISION }
end)

-- concord_v1_register: (queue) -> 1. Marks `queue` as a recipient (an agent's name).
redis.register_function('concord_v1_register', function(keys, args)
  local prefix = namespace(keys)
  redis.call('SADD', prefix .. 'recipients', name_arg(args[1], 'queue'))
  return 1
end)

-- concord_v1_unregister: (queue) -> 1 | 0. Unmarks it; its messages stay queued.
redis.register_function('concord_v1_unregister', function(keys, args)
  local prefix = namespace(keys)
  return redis.call('SREM', prefix .. 'recipients', name_arg(args[1], 'queue'))
end)

-- concord_v1_enqueue: (queue, wire, delayMs, dedupeWindowMs, requireRecipient '0'|'1')
--   -> { 'enqueued' } | { 'no_recipient' } | { 'duplicate', firstWire }
redis.register_function('concord_v1_enqueue', function(keys, args)
  local prefix = namespace(keys)
  local queue = name_arg(args[1], 'queue')
  local m = wire_arg(args[2])
  local delay = int_arg(args[3] or '0', 'delayMs', 0)
  local dedupe = int_arg(args[4] or '0', 'dedupeWindowMs', 0)
  local required = (args[5] or '1') == '1'
  return enqueue_one(prefix, queue, args[2], m, delay, dedupe, required)
end)

-- concord_v1_reply: (queue, wire, requireRecipient '0'|'1' [, requestQueue, requestId, token])
--   -> { status..., acked } : enqueues a reply (to an inbox `_inbox.<id>` or a queue) and, with
--   the request's lease, acks the request in the same atomic step. acked: 1, 0 (lease lost, the
--   reply is sent anyway, as Concord's bus does), or -1 (no lease given).
redis.register_function('concord_v1_reply', function(keys, args)
  local prefix = namespace(keys)
  local queue = name_arg(args[1], 'queue')
  local m = wire_arg(args[2])
  local out = enqueue_one(prefix, queue, args[2], m, 0, 0, (args[3] or '0') == '1')
  local acked = -1
  if args[4] ~= nil and args[4] ~= '' then
    local k = queue_keys(prefix, name_arg(args[4], 'requestQueue'))
    local id = segment(name_arg(args[5], 'requestId'))
    local score = held(k, id, args[6], now_ms())
    acked = 0
    if score then
      redis.call('ZREM', k.inflight, id)
      redis.call('HDEL', k.body, id, id .. ':h')
      redis.call('HDEL', k.tries, id)
      acked = 1
    end
  end
  out[#out + 1] = acked
  return out
end)

-- concord_v1_lease: (queue, max 1..1000, leaseMs) -> { waitMs, { { id, wire|false, attempt, token }, ... } }
--   Makes due delayed messages visible and takes back expired leases first. waitMs (when nothing
--   is left ready): ms until a delayed message or a lease falls due, -1 = nothing scheduled.
--   For an inbox queue (`_inbox.*`): pops up to max replies; attempt 1, token 'inbox'.
redis.register_function('concord_v1_lease', function(keys, args)
  local prefix = namespace(keys)
  local queue = name_arg(args[1], 'queue')
  local max = int_arg(args[2] or '1', 'max', 1, MAX_ROUND)
  local leaseMs = int_arg(args[3], 'leaseMs', 1)
  local k = queue_keys(prefix, queue)
  if string.sub(queue, 1, 7) == '_inbox.' then
    local popped = redis.call('LPOP', k.list, max)
    local out = {}
    if popped then
      for i, wire in ipairs(popped) do
        local ok, m = pcall(cjson.decode, wire)
        local id = (ok and type(m) == 'table' and type(m.id) == 'string') and m.id or ''
        out[i] = { id, wire, 1, 'inbox' }
      end
    end
    return { -1, out }
  end
  local now = now_ms()
  local function to_ready(ids, attempts)
    local bodies = redis.call('HMGET', k.body, unpack(ids))
    for i, id in ipairs(ids) do
      redis.call('ZADD', k.ready, order_of(bodies[i]), id)
      if attempts[i] > 0 then redis.call('HSET', k.tries, id, attempts[i]) end
    end
  end
  local due = redis.call('ZRANGEBYSCORE', k.delayed, '-inf', now, 'LIMIT', 0, MAX_ROUND)
  if #due > 0 then
    local known = redis.call('HMGET', k.tries, unpack(due))
    local attempts = {}
    for i = 1, #due do attempts[i] = tonumber(known[i]) or 0 end
    redis.call('ZREM', k.delayed, unpack(due))
    to_ready(due, attempts)
  end
  local lapsed = redis.call('ZRANGEBYSCORE', k.inflight, '-inf', now * SCALE + SCALE - 1, 'WITHSCORES', 'LIMIT', 0, MAX_ROUND)
  if #lapsed > 0 then
    local ids, attempts = {}, {}
    for i = 1, #lapsed / 2 do
      ids[i] = lapsed[2 * i - 1]
      attempts[i] = tonumber(lapsed[2 * i]) % SCALE
      if attempts[i] == SCALE - 1 then attempts[i] = tonumber(redis.call('HGET', k.tries, ids[i])) or attempts[i] end
    end
    redis.call('ZREM', k.inflight, unpack(ids))
    to_ready(ids, attempts)
  end

  local ids = redis.call('ZRANGE', k.ready, 0, max - 1)
  local n = #ids
  local out = {}
  local deadline = now + leaseMs
  if n > 0 then
    redis.call('ZREMRANGEBYRANK', k.ready, 0, n - 1)
    local bodies = redis.call('HMGET', k.body, unpack(ids))
    local known = redis.call('HMGET', k.tries, unpack(ids))
    for i = 1, n do
      local attempt = (tonumber(known[i]) or 0) + 1
      if attempt >= SCALE - 1 then redis.call('HSET', k.tries, ids[i], attempt) end
      local token = string.format('%.0f', deadline * SCALE + math.min(attempt, SCALE - 1))
      redis.call('ZADD', k.inflight, token, ids[i])
      local body = bodies[i]
      local wire = body and (string.match(body, '^%d+|(.*)$') or body) or false
      out[i] = { unsegment(ids[i]), wire, attempt, token }
    end
  end
  local waitMs = -1
  if redis.call('ZCARD', k.ready) > 0 then
    if n > 0 and redis.call('LLEN', k.signal) == 0 then redis.call('LPUSH', k.signal, '1') end
  else
    local d = redis.call('ZRANGE', k.delayed, 0, 0, 'WITHSCORES')
    local f = redis.call('ZRANGE', k.inflight, 0, 0, 'WITHSCORES')
    local nextAt = d[2] and tonumber(d[2])
    local fAt = f[2] and math.floor(tonumber(f[2]) / SCALE)
    if fAt and (nextAt == nil or fAt < nextAt) then nextAt = fAt end
    if nextAt then waitMs = math.max(nextAt - now, 1) end
    if d[2] == nil then redis.call('DEL', k.signal) else redis.call('LTRIM', k.signal, 0, 0) end
  end
  return { waitMs, out }
end)

-- concord_v1_ack: (queue, id, token) -> 1 | 0 (the lease was lost: expired, re-leased or moved).
redis.register_function('concord_v1_ack', function(keys, args)
  local prefix = namespace(keys)
  local k = queue_keys(prefix, name_arg(args[1], 'queue'))
  local id = segment(name_arg(args[2], 'id'))
  if not held(k, id, args[3], now_ms()) then return 0 end
  redis.call('ZREM', k.inflight, id)
  redis.call('HDEL', k.body, id, id .. ':h')
  redis.call('HDEL', k.tries, id)
  return 1
end)

-- concord_v1_nack: (queue, id, token, delayMs) -> 1 | 0. Gives a leased message back, visible
--   again after delayMs under its own order; its attempt count stays (the next lease is attempt+1).
redis.register_function('concord_v1_nack', function(keys, args)
  local prefix = namespace(keys)
  local k = queue_keys(prefix, name_arg(args[1], 'queue'))
  local id = segment(name_arg(args[2], 'id'))
  local delay = int_arg(args[4] or '0', 'delayMs', 0)
  local now = now_ms()
  local score = held(k, id, args[3], now)
  if not score then return 0 end
  local attempts = score % SCALE
  if attempts == SCALE - 1 then attempts = tonumber(redis.call('HGET', k.tries, id)) or attempts end
  redis.call('ZREM', k.inflight, id)
  redis.call('HSET', k.tries, id, attempts)
  if delay > 0 then
    redis.call('ZADD', k.delayed, now + delay, id)
  else
    redis.call('ZADD', k.ready, order_of(redis.call('HGET', k.body, id)), id)
  end
  signal(k)
  return 1
end)

-- concord_v1_extend: (queue, id, token, ms) -> newToken | 0. The old token stops working.
redis.register_function('concord_v1_extend', function(keys, args)
  local prefix = namespace(keys)
  local k = queue_keys(prefix, name_arg(args[1], 'queue'))
  local id = segment(name_arg(args[2], 'id'))
  local ms = int_arg(args[4], 'ms', 1)
  local now = now_ms()
  local score = held(k, id, args[3], now)
  if not score then return 0 end
  local token = string.format('%.0f', (now + ms) * SCALE + score % SCALE)
  redis.call('ZADD', k.inflight, token, id)
  return token
end)

-- concord_v1_dead_letter: (queue, id, token|'', reason, error|'', attempts, wire, raw|'') -> 1 | 0
--   Stores a dead letter {m, q, r, e, n, d, raw} (d = server ms); with a token, removes the
--   leased message in the same step, and stores nothing when that lease was lost (0). `wire` must
--   be a valid message (for `malformed`, a stand-in; `raw` keeps the original bytes). A later
--   letter for the same id replaces the earlier one and ends any redrive claim on it.
redis.register_function('concord_v1_dead_letter', function(keys, args)
  local prefix = namespace(keys)
  local queue = name_arg(args[1], 'queue')
  local id = name_arg(args[2], 'id')
  local token = args[3] or ''
  local reason = args[4]
  if not REASONS[reason] then
    fail('CONCORD_USAGE reason must be one of recipient_not_found, max_attempts, expired, malformed, got ' .. tostring(reason))
  end
  local attempts = int_arg(args[6], 'attempts', 0)
  local m = wire_arg(args[7])
  if m.id ~= id then fail('CONCORD_USAGE the letter\'s message id `' .. m.id .. '` is not the id given, `' .. id .. '`') end
  local now = now_ms()
  if token ~= '' then
    local k = queue_keys(prefix, queue)
    local idseg = segment(id)
    if not held(k, idseg, token, now) then return 0 end
    redis.call('ZREM', k.inflight, idseg)
    redis.call('HDEL', k.body, idseg, idseg .. ':h')
    redis.call('HDEL', k.tries, idseg)
  end
  local letter = '{"m":' .. cjson.encode(args[7]) .. ',"q":' .. cjson.encode(queue) .. ',"r":"' .. reason .. '"'
  if args[5] ~= nil and args[5] ~= '' then letter = letter .. ',"e":' .. cjson.encode(args[5]) end
  letter = letter .. ',"n":' .. string.format('%d', attempts) .. ',"d":' .. string.format('%d', now)
  if args[8] ~= nil and args[8] ~= '' then letter = letter .. ',"raw":' .. cjson.encode(args[8]) end
  letter = letter .. '}'
  redis.call('HSET', prefix .. 'dlq', id, letter)
  redis.call('ZADD', prefix .. 'dlq:order', redis.call('INCR', prefix .. 'seq'), id)
  redis.call('HDEL', prefix .. 'dlq:claims', id)
  return 1
end)

-- concord_v1_publish: (topic, wire) -> receivers. PUBLISH on channel concord:{ns}:topic:<topic>.
redis.register_function('concord_v1_publish', function(keys, args)
  local prefix = namespace(keys)
  local topic = name_arg(args[1], 'topic')
  wire_arg(args[2])
  return redis.call('PUBLISH', prefix .. 'topic:' .. topic, args[2])
end)
