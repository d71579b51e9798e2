-- GCRA (generic cell rate algorithm) shared by every process pacing one (source IP, provider
-- group) pair (volley, scheduler/src/warmup_counters.rs). Times are the caller's clock, in
-- microseconds since the Unix epoch: the warm-up clock may be compressed, so never Redis TIME.
-- KEYS[1] the theoretical arrival time (TAT).
-- ARGV[1] now, ARGV[2] emission interval T = 1/rate, ARGV[3] tolerance T * (burst - 1).
-- Returns 0 when one message may go now (the TAT moves on by T), else the wait (> 0).
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local wait = tat - tolerance - now
if wait > 0 then
  return wait
end
local new_tat = tat + interval
-- %.0f: tostring() would print 16-digit numbers in exponent form and lose precision. The key
-- outlives the TAT by a second; an expired key reads as "idle", which a past TAT means anyway.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', math.floor((new_tat - now) / 1000) + 1000))
return 0
