-- restore_v3: merge the database's view of one queue into Redis.
--
-- Adds what the database says is waiting or holding a slot and is missing
-- here; removes nothing (stale entries are freed by release_v4/dequeue_v2,
-- which hand their slots on). Safe on a live queue: an entry that moved on
-- since the database was read is left where it is.
--
-- KEYS[1] = meta     HASH  (see admit_v6.lua)
-- KEYS[2] = waiting  ZSET  execution id -> order score
-- KEYS[3] = active   ZSET  execution id -> lease deadline (ms)
-- KEYS[4] = enqueued HASH  queue seq of a waiting execution -> enqueued at (ms)
-- ARGV[1] = concurrency limit (-1 = unlimited)
-- ARGV[2] = seq (highest queue seq handed out)
-- ARGV[3] = grant_seq (highest grant seq handed out)
-- ARGV[4] = total_enqueued   ARGV[5] = total_terminal   ARGV[6] = total_completed
-- ARGV[7] = lease length (ms) for the restored active slots
-- ARGV[8] = number of terminal statuses S
-- ARGV[9 .. 8+2S] = S pairs: terminal status, executions that ended with it
-- ARGV[9+2S] = number of waiting entries W
-- then W triples: execution id, order score, enqueued at (ms)
-- then the execution ids holding a slot
--
-- Returns {waiting added, active added}. seq and grant_seq keep the higher
-- of Redis and the database, so no number is handed out twice; the totals
-- are taken from the database (the rejection counters, of requests that
-- left no row, are kept as Redis has them).

local meta, waiting, active, enqueued = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[7])

local function keep_max(field, value)
  local current = tonumber(redis.call('HGET', meta, field) or '0')
  if value > current then
    current = value
  end
  return current
end

local seq = keep_max('seq', tonumber(ARGV[2]))
local grant_seq = keep_max('grant_seq', tonumber(ARGV[3]))
redis.call('HSET', meta,
  'limit', tonumber(ARGV[1]), 'seq', seq, 'grant_seq', grant_seq,
  'total_enqueued', tonumber(ARGV[4]), 'total_terminal', tonumber(ARGV[5]),
  'total_completed', tonumber(ARGV[6]), 'updated_ms', now_ms)

local statuses = tonumber(ARGV[8])
local i = 9
for _ = 1, statuses do
  redis.call('HSET', meta, 'terminal:' .. ARGV[i], tonumber(ARGV[i + 1]))
  i = i + 2
end
local w = tonumber(ARGV[i])
i = i + 1
local added_waiting, added_active = 0, 0
for _ = 1, w do
  if not redis.call('ZSCORE', active, ARGV[i]) then
    added_waiting = added_waiting + redis.call('ZADD', waiting, 'NX', tonumber(ARGV[i + 1]), ARGV[i])
    redis.call('HSETNX', enqueued, tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]))
  end
  i = i + 3
end
while i <= #ARGV do
  if not redis.call('ZSCORE', waiting, ARGV[i]) then
    added_active = added_active + redis.call('ZADD', active, 'NX', now_ms + lease_ms, ARGV[i])
  end
  i = i + 1
end
return {added_waiting, added_active}
