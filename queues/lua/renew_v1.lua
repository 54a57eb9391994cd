-- renew_v1: extend the leases of slots still held.
--
-- KEYS[1] = active   ZSET  execution id -> lease deadline (ms)
-- ARGV[1] = lease length (ms) from now (Redis clock)
-- ARGV[2..n] = execution ids
--
-- Returns how many leases were extended. An id no longer holding a slot is
-- not added back (ZADD XX): a reclaimed lease stays reclaimed.

local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', deadline, ARGV[i])
end
return renewed
