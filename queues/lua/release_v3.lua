-- release_v3: free one execution's slot and hand free slots to the queue head.
--
-- KEYS[1] = meta     HASH  (see admit_v5.lua)
-- KEYS[2] = waiting  ZSET  execution id -> order score
-- KEYS[3] = active   ZSET  execution id -> lease deadline (ms)
-- KEYS[4] = enqueued HASH  queue seq of a waiting execution -> enqueued at (ms)
-- ARGV[1] = execution id whose slot is freed; "" only refills (limit change)
-- ARGV[2] = concurrency limit (-1 = unlimited), stored as the new limit;
--           "" keeps the stored one (every change of a limit refills with
--           the new one, so a worker ending a run need not know it)
-- ARGV[3] = terminal status to count ("" = not terminal: no counter moves)
-- ARGV[4] = requeue score: "" frees the slot for good; a number puts the
--           execution back in the queue at that score (its own seq, so it
--           returns to the head: a grant whose task never started)
-- ARGV[5] = lease length (ms) for the slots granted here
-- ARGV[6] = action config token to store ("" keeps the stored one): set
--           whenever the action's definition changes, so that processes
--           caching the definition know to read it again
--
-- Returns {released, config, id1, grant_seq1, id2, grant_seq2, ...}
--   released = 1 if this call freed the slot, 0 if the execution held none
--   (a duplicate or late release frees nothing), -1 if meta is missing.
--   config is the stored config token ("" if none). The ids that follow
--   were granted a slot, in FIFO order.

local meta, waiting, active, enqueued = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[1]
local status = ARGV[3]
local requeue_score = ARGV[4]
local lease_ms = tonumber(ARGV[5])
local config = ARGV[6]

if redis.call('EXISTS', meta) == 0 then
  return {-1}
end
local limit = tonumber(ARGV[2]) or tonumber(redis.call('HGET', meta, 'limit') or '-1')

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local released = 0
if id ~= '' and redis.call('ZREM', active, id) == 1 then
  released = 1
  if requeue_score ~= '' then
    redis.call('ZADD', waiting, tonumber(requeue_score), id)
    redis.call('HSET', enqueued, requeue_score, now_ms)
  elseif status ~= '' then
    redis.call('HINCRBY', meta, 'total_terminal', 1)
    redis.call('HINCRBY', meta, 'terminal:' .. status, 1)
    if status == 'completed' then
      redis.call('HINCRBY', meta, 'total_completed', 1)
    end
  end
end

redis.call('HSET', meta, 'limit', limit)
if config ~= '' then
  redis.call('HSET', meta, 'config', config)
else
  config = redis.call('HGET', meta, 'config') or ''
end
local result = {released, config}
while limit < 0 or redis.call('ZCARD', active) < limit do
  local head = redis.call('ZPOPMIN', waiting)
  if #head == 0 then
    break
  end
  local grant_seq = redis.call('HINCRBY', meta, 'grant_seq', 1)
  redis.call('HDEL', enqueued, head[2])
  redis.call('ZADD', active, now_ms + lease_ms, head[1])
  result[#result + 1] = head[1]
  result[#result + 1] = grant_seq
end

if released == 1 or #result > 2 then
  redis.call('HSET', meta, 'updated_ms', now_ms)
end
return result
