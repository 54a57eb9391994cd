-- woken_v1: a rate-limit wake-up has refilled every queue of its action:
-- the wake-up asked for is done with, unless a refill asked for a later
-- one meanwhile. Only the wake-up clears it: a release in one queue does
-- not know whether the action's other queues still wait for it, and a
-- past-due wake_at is how the reaper tells that a wake-up was lost.
--
-- KEYS[1] = meta of the action's "default" group (holds wake_at)
--
-- Returns 1 if a past-due wake_at was cleared, else 0.

local pending = redis.call('HGET', KEYS[1], 'wake_at')
if not pending then
  return 0
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(pending) >= now_ms then
  return 0
end
return redis.call('HDEL', KEYS[1], 'wake_at')
