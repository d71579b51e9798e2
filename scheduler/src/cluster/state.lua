-- KEYS: meta. ARGV: the new state (running|paused|cancelled). Returns the state before, or
-- `unknown` (never published), `complete` (every chunk acknowledged: nothing to control) or
-- `final` (cancelled, and the new state is not: a cancel is final).
if redis.call('HEXISTS', KEYS[1], 'toml') == 0 then
  return 'unknown'
end
local v = redis.call('HMGET', KEYS[1], 'published_all', 'published', 'acked', 'state')
if v[1] == '1' and tonumber(v[2] or '0') <= tonumber(v[3] or '0') then
  return 'complete'
end
local before = v[4] or 'running'
if before == 'cancelled' and ARGV[1] ~= 'cancelled' then
  return 'final'
end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
return before
