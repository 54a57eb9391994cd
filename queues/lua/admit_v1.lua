-- admit_v1: let one execution through the gate, or queue it, or reject it.
--
-- KEYS[1] = meta     HASH  limit, seq, grant_seq, total_enqueued,
--                          total_terminal, total_completed, updated_ms
-- KEYS[2] = waiting  ZSET  execution id -> order score (today: seq)
-- KEYS[3] = active   ZSET  execution id -> lease deadline (ms, Redis clock)
-- KEYS[4] = since    HASH  execution id -> enqueued at (ms, Redis clock)
-- ARGV[1] = execution id
-- ARGV[2] = concurrency limit (-1 = unlimited)
-- ARGV[3] = max queue length (waiting executions)
-- ARGV[4] = lease length (ms)
-- ARGV[5] = priority (reserved; must be 0 until priorities land)
--
-- Returns one of:
--   {"granted", seq, grant_seq}     a slot was free and nobody waits
--   {"queued", seq, position}       appended; position 1 = next
--   {"full", waiting}               rejected, nothing written
--   {"duplicate"}                   already waiting or holding a slot
--   {"uninitialized"}               no meta: the queue must be rebuilt first
-- A slot is granted only when nobody waits, which is what keeps FIFO.

local meta, waiting, active, since = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[1]
local limit = tonumber(ARGV[2])
local max_waiting = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])

if redis.call('EXISTS', meta) == 0 then
  return {'uninitialized'}
end
if redis.call('ZSCORE', waiting, id) or redis.call('ZSCORE', active, id) then
  return {'duplicate'}
end

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local waiting_count = redis.call('ZCARD', waiting)
redis.call('HSET', meta, 'limit', limit)

if waiting_count == 0 and (limit < 0 or redis.call('ZCARD', active) < limit) then
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local grant_seq = redis.call('HINCRBY', meta, 'grant_seq', 1)
  redis.call('HINCRBY', meta, 'total_enqueued', 1)
  redis.call('ZADD', active, now_ms + lease_ms, id)
  redis.call('HSET', meta, 'updated_ms', now_ms)
  return {'granted', seq, grant_seq}
end

if waiting_count >= max_waiting then
  return {'full', waiting_count}
end

local seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('HINCRBY', meta, 'total_enqueued', 1)
redis.call('ZADD', waiting, seq, id)
redis.call('HSET', since, id, now_ms)
redis.call('HSET', meta, 'updated_ms', now_ms)
return {'queued', seq, waiting_count + 1}
