-- admit_v6: let a batch of executions of one action through the gate, in
-- list order, into one or more of its queues (groups): each is granted a
-- slot, or queued (or cancelled, under a policy that cancels at the limit),
-- or (the whole batch, whatever its groups) rejected.
--
-- KEYS[1] = groups   SET   the action's groups other than "default"
-- KEYS[2] = meta of the action's "default" group: it exists once the
--           action's state is built, and holds the action's config token
-- KEYS[3] = starts   ZSET  execution id -> grant time (ms): the action's
--                          grants within its longest rate window
-- then 4 keys per group of the batch, in ARGV's group order:
--   meta     HASH  limit, seq, grant_seq, total_enqueued, total_terminal,
--                  total_completed, updated_ms, config (token of the
--                  action's definition), terminal:<status>, rejected:<reason>,
--                  rates (the rate limits, see below), wake_at (ms: the
--                  wake-up asked for while the rate holds the head back)
--   waiting  ZSET  execution id -> order score: band * 1e12 + seq, band =
--                  9 - priority, so a higher priority comes first and equal
--                  ones keep request order
--   active   ZSET  execution id -> lease deadline (ms, Redis clock)
--   enqueued HASH  order score of a waiting execution -> enqueued at (ms)
-- ARGV[1] = concurrency limit of each group (-1 = unlimited)
-- ARGV[2] = max queue length of each group (waiting executions)
-- ARGV[3] = lease length (ms)
-- ARGV[4] = config token stored if the action has none yet
-- ARGV[5] = at the limit: "queue" (wait in order) or "cancel" (end at once)
-- ARGV[6] = rate limits: "max:window_ms,..." ("" none): at most max grants
--           of the action in any window_ms, each one; stored in each group
-- ARGV[7] = number of groups G
-- then per group: its name, its number of ids n, then n pairs: execution
--   id, priority band (0 = priority 9 .. 9 = priority 0), in request order
--
-- Returns one of:
--   {"admitted", config, wake, rated, code1, seq1, n1, code2, seq2, n2, ...}
--        config: the action's config token; wake: 0, or the time (ms) at
--        which a rate limit lets the next one through, when the caller
--        must schedule a wake-up (only the first to see a new time is
--        told: one wake-up per time); rated: 1 if rate limits apply (a run
--        then moves its entry in starts to its start time, started_v1.lua);
--        then one triple per id, in ARGV order:
--        code "g": granted, n = its grant_seq
--        code "q": queued,  n = its position (1 = next)
--        code "c": no slot and the policy cancels at the limit: counted as
--                  enqueued and ended cancelled (and rejected:at_limit);
--                  n = 0
--        code "d": already waiting or holding a slot; seq and n are 0
--   {"full", group, waiting}  the ids of that group that would have to wait
--                  do not fit in its queue: none of the batch is admitted;
--                  only the counter rejected:queue_full of the "default"
--                  group (the action's) grows, by the batch's size
--   {"uninitialized"}  the action's state is not built: rebuild it first
-- A slot is granted only while nobody of its group waits and the rate
-- limits allow, which is what keeps FIFO: once one id of a group is
-- queued, every later one queues behind it. An id held back by a rate limit
-- waits at its place (a policy cancelling at the limit does not cancel it:
-- a slot is free). A group seen for the first time starts empty, with the
-- action's limit and config token.

local limit = tonumber(ARGV[1])
local max_waiting = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local cancel_at_limit = ARGV[5] == 'cancel'
local rates_spec = ARGV[6]
local group_count = tonumber(ARGV[7])
local default_meta, starts = KEYS[2], KEYS[3]
local BAND = 1000000000000

if redis.call('EXISTS', default_meta) == 0 then
  return {'uninitialized'}
end
local config = redis.call('HGET', default_meta, 'config')
if not config then
  config = ARGV[4]
  redis.call('HSET', default_meta, 'config', config)
end

--!include rates.lua

local batch_size = 0
local i = 8
for _ = 1, group_count do
  batch_size = batch_size + tonumber(ARGV[i + 1])
  i = i + 2 + 2 * tonumber(ARGV[i + 1])
end

-- First pass: what each group would do, and whether all of them fit.
local groups = {}
i = 8
for g = 1, group_count do
  local k = 3 + (g - 1) * 4
  local group = {
    name = ARGV[i], meta = KEYS[k + 1], waiting = KEYS[k + 2], active = KEYS[k + 3],
    enqueued = KEYS[k + 4], first = i + 2, last = i + 1 + 2 * tonumber(ARGV[i + 1]),
    fresh = {}, new_count = 0,
  }
  local seen = {}
  for j = group.first, group.last, 2 do
    local id = ARGV[j]
    local fresh = not (seen[id] or redis.call('ZSCORE', group.waiting, id)
      or redis.call('ZSCORE', group.active, id))
    group.fresh[j] = fresh
    seen[id] = true
    if fresh then
      group.new_count = group.new_count + 1
    end
  end
  group.waiting_count = redis.call('ZCARD', group.waiting)
  group.free = 0
  if group.waiting_count == 0 then
    if limit < 0 then
      group.free = group.new_count
    else
      group.free = math.max(0, limit - redis.call('ZCARD', group.active))
    end
  end
  if not cancel_at_limit and group.new_count > group.free
      and group.waiting_count + group.new_count - group.free > max_waiting then
    redis.call('HINCRBY', default_meta, 'rejected:queue_full', batch_size)
    return {'full', group.name, group.waiting_count}
  end
  groups[g] = group
  i = group.last + 1
end

-- Second pass: admit.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rates, longest = parse_rates(rates_spec)
if longest > 0 then
  redis.call('ZREMRANGEBYSCORE', starts, '-inf', now_ms - longest)
end
local wake = 0
local result = {'admitted', config, 0, #rates > 0 and 1 or 0}
for _, group in ipairs(groups) do
  local meta = group.meta
  if group.name ~= 'default' and redis.call('EXISTS', meta) == 0 then
    redis.call('SADD', KEYS[1], group.name)
    redis.call('HSET', meta, 'seq', 0, 'grant_seq', 0, 'config', config)
  end
  redis.call('HSET', meta, 'limit', limit)
  if rates_spec == '' then
    redis.call('HDEL', meta, 'rates')
  else
    redis.call('HSET', meta, 'rates', rates_spec)
  end
  local seq = tonumber(redis.call('HGET', meta, 'seq') or '0')
  local grant_seq = tonumber(redis.call('HGET', meta, 'grant_seq') or '0')
  local free, waiting_count, cancelled = group.free, group.waiting_count, 0
  local held = 0
  for j = group.first, group.last, 2 do
    local id = ARGV[j]
    if not group.fresh[j] then
      result[#result + 1] = 'd'
      result[#result + 1] = 0
      result[#result + 1] = 0
    else
      seq = seq + 1
      if free > 0 and held == 0 and #rates > 0 then
        held = held_until(starts, rates, now_ms)
      end
      if free > 0 and held == 0 then
        free = free - 1
        grant_seq = grant_seq + 1
        redis.call('ZADD', group.active, now_ms + lease_ms, id)
        if #rates > 0 then
          redis.call('ZADD', starts, now_ms, id)
        end
        result[#result + 1] = 'g'
        result[#result + 1] = seq
        result[#result + 1] = grant_seq
      elseif cancel_at_limit and held == 0 then
        cancelled = cancelled + 1
        result[#result + 1] = 'c'
        result[#result + 1] = seq
        result[#result + 1] = 0
      else
        -- At the limit, or a free slot the rate holds back: wait in order.
        local score = tonumber(ARGV[j + 1]) * BAND + seq
        waiting_count = waiting_count + 1
        redis.call('ZADD', group.waiting, score, id)
        redis.call('HSET', group.enqueued, score, now_ms)
        result[#result + 1] = 'q'
        result[#result + 1] = seq
        result[#result + 1] = redis.call('ZRANK', group.waiting, id) + 1
      end
    end
  end
  if held > 0 and wake == 0 then
    wake = wake_for(default_meta, held, now_ms)
  end
  if group.new_count > 0 then
    redis.call('HSET', meta, 'seq', seq, 'grant_seq', grant_seq, 'updated_ms', now_ms)
    redis.call('HINCRBY', meta, 'total_enqueued', group.new_count)
  end
  if cancelled > 0 then
    redis.call('HINCRBY', meta, 'total_terminal', cancelled)
    redis.call('HINCRBY', meta, 'terminal:cancelled', cancelled)
    redis.call('HINCRBY', meta, 'rejected:at_limit', cancelled)
  end
end
result[3] = wake
return result
