-- started_v1: a granted execution of a rate-limited action has started:
-- its entry in the action's rate window moves from its grant time to now,
-- so the window counts starts (a grant that waited for a free worker
-- process does not let the next one start less than a window after it).
--
-- KEYS[1] = starts   ZSET  execution id -> grant (then start) time, ms
-- ARGV[1] = execution id
--
-- Returns 1 if the entry was there and moved, else 0 (left the window).

if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', 'CH', now_ms, ARGV[1])
