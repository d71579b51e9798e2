-- Takes one message of a (source IP, provider group) budget atomically, or says which cap is
-- spent (volley, scheduler/src/warmup_counters.rs). Mirrors Taken::spent in
-- warmup/src/counters.rs: the daily cap is checked first.
-- KEYS[1] the day counter, KEYS[2] the hour counter.
-- ARGV[1] daily cap, ARGV[2] hourly cap, ARGV[3] day key TTL (s), ARGV[4] hour key TTL (s).
-- Returns {verdict, day, hour}: verdict 0 = counted (counts after the increment),
-- 1 = daily cap spent, 2 = hourly cap spent (nothing counted).
local day = tonumber(redis.call('GET', KEYS[1])) or 0
local hour = tonumber(redis.call('GET', KEYS[2])) or 0
if day >= tonumber(ARGV[1]) then
  return {1, day, hour}
end
if hour >= tonumber(ARGV[2]) then
  return {2, day, hour}
end
day = redis.call('INCR', KEYS[1])
hour = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return {0, day, hour}
