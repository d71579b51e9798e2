-- KEYS: meta, chunks. ARGV: rows json, last line, row count. Returns the chunk's number.
local seq = redis.call('HINCRBY', KEYS[1], 'published', 1)
redis.call('XADD', KEYS[2], '*', 'seq', seq, 'rows', ARGV[1])
redis.call('HSET', KEYS[1], 'published_through', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'rows', ARGV[3])
return seq
