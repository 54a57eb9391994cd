-- dequeue_v2: take a waiting execution out of the queue (cancel, queue timeout).
--
-- KEYS[1] = meta     HASH  (see admit_v6.lua)
-- KEYS[2] = waiting  ZSET  execution id -> order score
-- KEYS[3] = enqueued HASH  queue seq of a waiting execution -> enqueued at (ms)
-- ARGV[1] = execution id
-- ARGV[2] = terminal status to count
--
-- Returns 1 if the execution was waiting and is now removed, else 0. The
-- others keep their scores, so their order is unchanged.

local meta, waiting, enqueued = KEYS[1], KEYS[2], KEYS[3]
local score = redis.call('ZSCORE', waiting, ARGV[1])
if not score then
  return 0
end
redis.call('ZREM', waiting, ARGV[1])
redis.call('HDEL', enqueued, score)
redis.call('HINCRBY', meta, 'total_terminal', 1)
redis.call('HINCRBY', meta, 'terminal:' .. ARGV[2], 1)
if ARGV[2] == 'completed' then
  redis.call('HINCRBY', meta, 'total_completed', 1)
end
local t = redis.call('TIME')
redis.call('HSET', meta, 'updated_ms', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return 1
