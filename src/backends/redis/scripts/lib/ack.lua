-- Shared by ack-many-5.lua and enqueue-2.lua (included where a script says `--#include ack`).
-- Removes leased messages of one queue for good, each only if its lease is still held. A lease
-- whose deadline passed is lost even before another consumer takes the message: it is made
-- visible again here. `k` names the queue's keys (ready, inflight, signal, body, tries); `now` is
-- server ms; ARGV[first..last] holds the acks grouped by lease token (leases of one lease call
-- share theirs): token, c, then c id segments, then the next group. One argument per ack, not two.
-- Returns one flag per ack, in that order: 1, or 0 when that lease was lost (expired, re-leased or moved).
local function ackLeases(k, now, first, last)
  local SCALE = 1024
  local ids, tokens = {}, {}
  local j = first
  while j < last do
    local token = tonumber(ARGV[j])
    local c = tonumber(ARGV[j + 1])
    for i = 1, c do
      ids[#ids + 1] = ARGV[j + 1 + i]
      tokens[#tokens + 1] = token
    end
    j = j + 2 + c
  end
  local scores = redis.call('ZMSCORE', k.inflight, unpack(ids))
  local out, done, tried, lapsed, attempts = {}, {}, {}, {}, {}
  for i, id in ipairs(ids) do
    out[i] = 0
    local score = tonumber(scores[i])
    if score and score == tokens[i] then
      local attempt = score % SCALE
      if math.floor(score / SCALE) > now then
        out[i] = 1
        done[#done + 1] = id
        -- Leased before: its tries entry goes too.
        if attempt > 1 then tried[#tried + 1] = id end
      else
        lapsed[#lapsed + 1] = id
        attempts[#attempts + 1] = attempt
      end
    end
  end
  if #done > 0 then
    redis.call('ZREM', k.inflight, unpack(done))
    -- The body and its holder record ('<id>:h', see lease-6.lua).
    local fields = {}
    for i, id in ipairs(done) do
      fields[2 * i - 1] = id
      fields[2 * i] = id .. ':h'
    end
    redis.call('HDEL', k.body, unpack(fields))
    if #tried > 0 then redis.call('HDEL', k.tries, unpack(tried)) end
  end
  if #lapsed > 0 then
    -- Lapsed: visible again under its own order, its attempts remembered.
    local bodies = redis.call('HMGET', k.body, unpack(lapsed))
    local ready, tries = {}, {}
    for i, id in ipairs(lapsed) do
      local a = attempts[i]
      if a == SCALE - 1 then a = tonumber(redis.call('HGET', k.tries, id)) or a end
      ready[2 * i - 1] = orderOf(bodies[i])
      ready[2 * i] = id
      tries[2 * i - 1] = id
      tries[2 * i] = a
    end
    redis.call('ZREM', k.inflight, unpack(lapsed))
    redis.call('ZADD', k.ready, unpack(ready))
    redis.call('HSET', k.tries, unpack(tries))
    redis.call('LPUSH', k.signal, '1')
    redis.call('LTRIM', k.signal, 0, 15)
  end
  return out
end
