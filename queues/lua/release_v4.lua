-- release_v4: free one execution's slot and hand free slots to the queue
-- head, as far as the limit and the action's rate limits allow.
--
-- KEYS[1] = meta     HASH  (see admit_v6.lua)
-- KEYS[2] = waiting  ZSET  execution id -> order score
-- KEYS[3] = active   ZSET  execution id -> lease deadline (ms)
-- KEYS[4] = enqueued HASH  order score of a waiting execution -> enqueued at (ms)
-- KEYS[5] = starts   ZSET  the action's grant times (ms), see admit_v6.lua
-- KEYS[6] = meta of the action's "default" group: holds wake_at, the time of
--           the wake-up asked for while a rate limit holds a head back
-- ARGV[1] = execution id whose slot is freed; "" only refills (limit change)
-- ARGV[2] = concurrency limit (-1 = unlimited), stored as the new limit;
--           "" keeps the stored one (every change of a limit refills with
--           the new one, so a worker ending a run need not know it)
-- ARGV[3] = terminal status to count ("" = not terminal: no counter moves)
-- ARGV[4] = requeue score: "" frees the slot for good; a number puts the
--           execution back in the queue at that score (its own: priority
--           and seq, so it returns to its place: a grant whose task never
--           started; its grant leaves the rate window)
-- ARGV[5] = lease length (ms) for the slots granted here
-- ARGV[6] = action config token to store ("" keeps the stored one): set
--           whenever the action's definition changes, so that processes
--           caching the definition know to read it again
-- ARGV[7] = rate limits to store, "max:window_ms,..."; "" keeps the stored
--           ones, "none" clears them (like the limit, every change of a
--           policy refills with the new ones)
--
-- Returns {released, config, wake, rated, id1, grant_seq1, id2, grant_seq2, ...}
--   released = 1 if this call freed the slot, 0 if the execution held none
--   (a duplicate or late release frees nothing), -1 if meta is missing.
--   config is the stored config token ("" if none). wake is 0, or the time
--   (ms) at which the rate limits let the head through, when the caller
--   must schedule a wake-up for it (one per time); rated 1 if rate limits
--   apply (see admit_v6.lua). The ids that follow were granted a slot, in
--   FIFO order.

local meta, waiting, active, enqueued, starts, default_meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id = ARGV[1]
local status = ARGV[3]
local requeue_score = ARGV[4]
local lease_ms = tonumber(ARGV[5])
local config = ARGV[6]

if redis.call('EXISTS', meta) == 0 then
  return {-1}
end
local limit = tonumber(ARGV[2]) or tonumber(redis.call('HGET', meta, 'limit') or '-1')
local rates_spec = ARGV[7]
if rates_spec == '' then
  rates_spec = redis.call('HGET', meta, 'rates') or ''
elseif rates_spec == 'none' then
  rates_spec = ''
end

--!include rates.lua

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local released = 0
if id ~= '' and redis.call('ZREM', active, id) == 1 then
  released = 1
  if requeue_score ~= '' then
    redis.call('ZADD', waiting, tonumber(requeue_score), id)
    redis.call('HSET', enqueued, requeue_score, now_ms)
    redis.call('ZREM', starts, id)
  elseif status ~= '' then
    redis.call('HINCRBY', meta, 'total_terminal', 1)
    redis.call('HINCRBY', meta, 'terminal:' .. status, 1)
    if status == 'completed' then
      redis.call('HINCRBY', meta, 'total_completed', 1)
    end
  end
end

redis.call('HSET', meta, 'limit', limit)
if rates_spec == '' then
  redis.call('HDEL', meta, 'rates')
elseif ARGV[7] ~= '' then
  redis.call('HSET', meta, 'rates', rates_spec)
end
if config ~= '' then
  redis.call('HSET', meta, 'config', config)
else
  config = redis.call('HGET', meta, 'config') or ''
end
local rates, longest = parse_rates(rates_spec)
if longest > 0 then
  redis.call('ZREMRANGEBYSCORE', starts, '-inf', now_ms - longest)
end
local wake = 0
local result = {released, config, 0, #rates > 0 and 1 or 0}
while limit < 0 or redis.call('ZCARD', active) < limit do
  if #rates > 0 then
    local held = held_until(starts, rates, now_ms)
    if held > 0 then
      if redis.call('ZCARD', waiting) > 0 then
        wake = wake_for(default_meta, held, now_ms)
      end
      break
    end
  end
  local head = redis.call('ZPOPMIN', waiting)
  if #head == 0 then
    break
  end
  local grant_seq = redis.call('HINCRBY', meta, 'grant_seq', 1)
  redis.call('HDEL', enqueued, head[2])
  redis.call('ZADD', active, now_ms + lease_ms, head[1])
  if #rates > 0 then
    redis.call('ZADD', starts, now_ms, head[1])
  end
  result[#result + 1] = head[1]
  result[#result + 1] = grant_seq
end
-- A past-due wake_at stays: only the wake-up, having refilled every queue
-- of the action, clears it (woken_v1.lua).
result[3] = wake

if released == 1 or #result > 4 then
  redis.call('HSET', meta, 'updated_ms', now_ms)
end
return result
