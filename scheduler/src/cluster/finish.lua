-- KEYS: chunks, meta, done, counts. ARGV: group, node, entry id, resent, then (line, outcome)
-- pairs. A recipient's outcome is counted only when its done bit was not set yet; the chunk is
-- acknowledged (and deleted) only if `node` still owns it. Returns 1 if it did.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
local owned = (#p == 1 and p[1][2] == ARGV[2])
local i = 5
while i < #ARGV do
  if redis.call('SETBIT', KEYS[3], ARGV[i], 1) == 0 then
    redis.call('HINCRBY', KEYS[4], ARGV[i + 1], 1)
  else
    redis.call('HINCRBY', KEYS[4], 'duplicate_finals', 1)
  end
  i = i + 2
end
if tonumber(ARGV[4]) > 0 then
  redis.call('HINCRBY', KEYS[4], 'resent_after_restart', ARGV[4])
end
if owned then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[3])
  redis.call('HINCRBY', KEYS[2], 'acked', 1)
  return 1
end
return 0
