-- Rate limits, shared by admit_v6.lua and release_v4.lua (pasted in where
-- a script says "--!include rates.lua", by queues.gate when it registers
-- the scripts, so both check a window the same way).
--
-- A rate is {max, window_ms}: at most max grants of the action in any
-- window_ms. starts is the action's ZSET of grant (then start) times.

local function parse_rates(spec)
  local rates, longest = {}, 0
  for max, window in string.gmatch(spec, '(%d+):(%d+)') do
    rates[#rates + 1] = {tonumber(max), tonumber(window)}
    longest = math.max(longest, tonumber(window))
  end
  return rates, longest
end

-- 0 if the rates let one more grant through at now_ms, else when they will.
local function held_until(starts, rates, now_ms)
  local until_ms = 0
  for _, rate in ipairs(rates) do
    local max, window = rate[1], rate[2]
    local since = '(' .. (now_ms - window)
    local count = redis.call('ZCOUNT', starts, since, '+inf')
    if count >= max then
      local entry = redis.call('ZRANGEBYSCORE', starts, since, '+inf', 'WITHSCORES', 'LIMIT', count - max, 1)
      until_ms = math.max(until_ms, tonumber(entry[2]) + window)
    end
  end
  return until_ms
end

-- The time to ask the caller to wake the action's queues at, or 0 when a
-- wake-up at or before it is already on its way (wake_at in default_meta).
local function wake_for(default_meta, at_ms, now_ms)
  local pending = tonumber(redis.call('HGET', default_meta, 'wake_at') or '0')
  if pending >= now_ms and pending <= at_ms then
    return 0
  end
  redis.call('HSET', default_meta, 'wake_at', at_ms)
  return at_ms
end
