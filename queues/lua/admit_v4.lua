-- admit_v4: let a batch of executions through the gate, in list order: each
-- is granted a slot, or queued (or cancelled, under a policy that cancels at
-- the limit), or (the whole batch) rejected.
--
-- KEYS[1] = meta     HASH  limit, seq, grant_seq, total_enqueued,
--                          total_terminal, total_completed, updated_ms,
--                          config (token of the action's definition)
-- KEYS[2] = waiting  ZSET  execution id -> order score: band * 1e12 + seq,
--                          band = 9 - priority, so a higher priority comes
--                          first and equal ones keep request order
-- KEYS[3] = active   ZSET  execution id -> lease deadline (ms, Redis clock)
-- KEYS[4] = enqueued HASH  order score of a waiting execution -> enqueued at
--                          (ms, Redis clock)
-- ARGV[1] = concurrency limit (-1 = unlimited)
-- ARGV[2] = max queue length (waiting executions)
-- ARGV[3] = lease length (ms)
-- ARGV[4] = config token stored if the queue has none yet
-- ARGV[5] = at the limit: "queue" (wait in order) or "cancel" (end at once)
-- ARGV[6..n] = pairs: execution id, priority band (0 = priority 9 .. 9 =
--              priority 0), in request order
--
-- Returns one of:
--   {"admitted", config, code1, seq1, n1, code2, seq2, n2, ...}
--        config: the stored config token; then one triple per id:
--        code "g": granted, n = its grant_seq
--        code "q": queued,  n = its position (1 = next)
--        code "c": no slot and the policy cancels at the limit: counted as
--                  enqueued and ended cancelled (and rejected:at_limit);
--                  n = 0
--        code "d": already waiting or holding a slot; seq and n are 0
--   {"full", waiting}     the ids that would have to wait do not fit in
--                         the queue: none is admitted; only the counter
--                         rejected:queue_full grows by the batch's size
--   {"uninitialized"}     no meta: the queue must be rebuilt first
-- A slot is granted only while nobody waits, which is what keeps FIFO: once
-- one id of the batch is queued, every later one queues behind it.

local meta, waiting, active, enqueued = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local limit = tonumber(ARGV[1])
local max_waiting = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local cancel_at_limit = ARGV[5] == 'cancel'
local BAND = 1000000000000

if redis.call('EXISTS', meta) == 0 then
  return {'uninitialized'}
end

local fresh, seen = {}, {}
local batch_size = 0
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  fresh[i] = not (seen[id] or redis.call('ZSCORE', waiting, id) or redis.call('ZSCORE', active, id))
  seen[id] = true
  batch_size = batch_size + 1
end

local waiting_count = redis.call('ZCARD', waiting)
local free = 0
if waiting_count == 0 then
  if limit < 0 then
    free = batch_size
  else
    free = math.max(0, limit - redis.call('ZCARD', active))
  end
end
local new_count = 0
for i = 6, #ARGV, 2 do
  if fresh[i] then
    new_count = new_count + 1
  end
end
if not cancel_at_limit and new_count > free and waiting_count + new_count - free > max_waiting then
  redis.call('HINCRBY', meta, 'rejected:queue_full', batch_size)
  return {'full', waiting_count}
end

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', meta, 'limit', limit)
local seq = tonumber(redis.call('HGET', meta, 'seq') or '0')
local grant_seq = tonumber(redis.call('HGET', meta, 'grant_seq') or '0')
local config = redis.call('HGET', meta, 'config')
if not config then
  config = ARGV[4]
  redis.call('HSET', meta, 'config', config)
end
local result = {'admitted', config}
local cancelled = 0
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  if not fresh[i] then
    result[#result + 1] = 'd'
    result[#result + 1] = 0
    result[#result + 1] = 0
  else
    seq = seq + 1
    if free > 0 then
      free = free - 1
      grant_seq = grant_seq + 1
      redis.call('ZADD', active, now_ms + lease_ms, id)
      result[#result + 1] = 'g'
      result[#result + 1] = seq
      result[#result + 1] = grant_seq
    elseif cancel_at_limit then
      cancelled = cancelled + 1
      result[#result + 1] = 'c'
      result[#result + 1] = seq
      result[#result + 1] = 0
    else
      local score = tonumber(ARGV[i + 1]) * BAND + seq
      waiting_count = waiting_count + 1
      redis.call('ZADD', waiting, score, id)
      redis.call('HSET', enqueued, score, now_ms)
      result[#result + 1] = 'q'
      result[#result + 1] = seq
      result[#result + 1] = redis.call('ZRANK', waiting, id) + 1
    end
  end
end
if new_count > 0 then
  redis.call('HSET', meta, 'seq', seq, 'grant_seq', grant_seq, 'updated_ms', now_ms)
  redis.call('HINCRBY', meta, 'total_enqueued', new_count)
end
if cancelled > 0 then
  redis.call('HINCRBY', meta, 'total_terminal', cancelled)
  redis.call('HINCRBY', meta, 'terminal:cancelled', cancelled)
  redis.call('HINCRBY', meta, 'rejected:at_limit', cancelled)
end
return result
