-- release: give back a leased event that was never sent (shutdown): due at once, no
-- attempt counted, its budget stamp removed.
-- KEYS: 1 ob:items, 2 ob:ready:<rid>, 3 ob:wait:<rid>, 4 bud:<rid>.  ARGV: 1 seq, 2 stamp, 3 now.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[2])
if not raw then return 0 end
local item = cjson.decode(raw)
item.lease = 0
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(item))
ob_schedule({items = KEYS[1]}, {ready = KEYS[2], wait = KEYS[3]}, ARGV[1], tonumber(ARGV[3]))
return 1
