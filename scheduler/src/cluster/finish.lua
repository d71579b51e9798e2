-- KEYS: chunks, meta, done, counts, parked. ARGV: group, node, entry id, resent, mode, the
-- byte of the done bits the masks start at, then (outcome, mask) pairs: bit k of a mask (most
-- significant first, as SETBIT numbers them) stands for line 8 * first + k. A recipient's
-- outcome is counted only when its done bit was not set yet (else it is a duplicate final).
-- The bits are read and written a byte at a time, not one call per recipient (a SETBIT per
-- line cost Redis about 0.7 us per recipient). If `node` still owns the chunk: mode `ack`
-- acknowledges (and deletes) it, mode `park` parks it (its other rows wait for retries), mode
-- `count` only counts (a chunk whose lines span more than one call). Returns 1 if `node`
-- owned it.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
local owned = (#p == 1 and p[1][2] == ARGV[2])
local first = tonumber(ARGV[6])
local names, masks, len = {}, {}, 0
local i = 7
while i < #ARGV do
  names[#names + 1] = ARGV[i]
  masks[#masks + 1] = ARGV[i + 1]
  if #ARGV[i + 1] > len then
    len = #ARGV[i + 1]
  end
  i = i + 2
end
local counts = {}
local duplicates = 0
if len > 0 then
  local ones = {}
  for v = 0, 255 do
    local n, x = 0, v
    while x > 0 do
      n = n + x % 2
      x = (x - x % 2) / 2
    end
    ones[v] = n
  end
  local before = redis.call('GETRANGE', KEYS[3], first, first + len - 1)
  local after = {}
  for b = 1, len do
    local seen = string.byte(before, b) or 0
    for k = 1, #masks do
      local m = string.byte(masks[k], b) or 0
      if m ~= 0 then
        counts[k] = (counts[k] or 0) + ones[bit.band(m, bit.bnot(seen))]
        duplicates = duplicates + ones[bit.band(m, seen)]
        seen = bit.bor(seen, m)
      end
    end
    after[b] = seen
  end
  local parts = {}
  for s = 1, len, 4096 do
    parts[#parts + 1] = string.char(unpack(after, s, math.min(s + 4095, len)))
  end
  redis.call('SETRANGE', KEYS[3], first, table.concat(parts))
end
for k, n in pairs(counts) do
  if n > 0 then
    redis.call('HINCRBY', KEYS[4], names[k], n)
  end
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
if ARGV[5] == 'count' then
  return 1
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
