-- KEYS: chunks, meta, done, counts, parked. ARGV: group, node, entry id, resent, mode, then
-- (line, outcome) pairs. A recipient's outcome is counted only when its done bit was not set
-- yet. If `node` still owns the chunk: mode `ack` acknowledges (and deletes) it, mode `park`
-- parks it (its other rows wait for retries). Returns 1 if `node` owned it.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
local owned = (#p == 1 and p[1][2] == ARGV[2])
local counts = {}
local duplicates = 0
local i = 6
while i < #ARGV do
  if redis.call('SETBIT', KEYS[3], ARGV[i], 1) == 0 then
    counts[ARGV[i + 1]] = (counts[ARGV[i + 1]] or 0) + 1
  else
    duplicates = duplicates + 1
  end
  i = i + 2
end
for outcome, n in pairs(counts) do
  redis.call('HINCRBY', KEYS[4], outcome, n)
end
if duplicates > 0 then
  redis.call('HINCRBY', KEYS[4], 'duplicate_finals', duplicates)
end
if tonumber(ARGV[4]) > 0 then
  redis.call('HINCRBY', KEYS[4], 'resent_after_restart', ARGV[4])
end
if not owned then
  return 0
end
if ARGV[5] == 'park' then
  redis.call('SADD', KEYS[5], ARGV[3])
  return 1
end
redis.call('SREM', KEYS[5], ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], 'acked', 1)
return 1
