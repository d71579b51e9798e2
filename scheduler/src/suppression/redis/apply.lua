-- Applies one batch of suppression updates atomically (volley, scheduler/src/suppression/redis.rs).
-- ARGV[1] soft-bounce limit, ARGV[2] window in seconds; then three ARGV per update:
--   op ('s' suppress | 'b' soft bounce | 'f' forget soft bounces | 'r' remove), address,
--   payload JSON.
-- KEYS: two per update: {prefix}:suppressed:{scope}, {prefix}:soft:{scope}.
-- Mirrors merge() and soft_bounce() in scheduler/src/suppression/entry.rs.
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local n = (#ARGV - 2) / 3
for i = 0, n - 1 do
  local op, addr, payload = ARGV[3 + 3 * i], ARGV[4 + 3 * i], ARGV[5 + 3 * i]
  local skey, bkey = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  if op == 's' then
    local new = cjson.decode(payload)
    local old = redis.call('HGET', skey, addr)
    local replayed = false
    if old then
      local ok, o = pcall(cjson.decode, old)
      if ok and type(o) == 'table' and tonumber(o.first) and tonumber(o.last) and tonumber(o.count) then
        -- The same campaign's bounce again is the same event replayed: keep the entry.
        if o.source == new.source and type(new.source) == 'string' and string.sub(new.source, 1, 7) == 'bounce:' then
          replayed = true
        end
        new.first = math.min(o.first, new.first)
        new.last = math.max(o.last, new.last)
        new.count = math.min(o.count + new.count, 4294967295)
      end
    end
    if not replayed then
      redis.call('HSET', skey, addr, cjson.encode(new))
    end
  elseif op == 'b' then
    if redis.call('HEXISTS', skey, addr) == 0 then
      local b = cjson.decode(payload)
      local stamps = {}
      local old = redis.call('HGET', bkey, addr)
      if old then
        local ok, o = pcall(cjson.decode, old)
        if ok and type(o) == 'table' and type(o.at) == 'table' then
          for _, t in ipairs(o.at) do
            if tonumber(t) and t + window > b.at then
              table.insert(stamps, t)
            end
          end
        end
      end
      table.insert(stamps, b.at)
      table.sort(stamps)
      if #stamps >= limit then
        local e = b.entry
        e.reason = b.head .. #stamps .. b.tail
        e.first = stamps[1]
        e.last = stamps[#stamps]
        e.count = #stamps
        redis.call('HSET', skey, addr, cjson.encode(e))
        redis.call('HDEL', bkey, addr)
      else
        local r = { at = stamps, code = b.code, enhanced = b.enhanced, reason = b.reason }
        redis.call('HSET', bkey, addr, cjson.encode(r))
      end
    end
  elseif op == 'f' then
    redis.call('HDEL', bkey, addr)
  else
    redis.call('HDEL', skey, addr)
    redis.call('HDEL', bkey, addr)
  end
end
return n
