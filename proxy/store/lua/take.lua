-- KEYS[1] = prefix; ARGV[1] = rid, ARGV[2] = now (s), ARGV[3] = lease (s).
-- Atomically lease the most urgent due head of the routing key's lines; returns its JSON
-- or nil. A lease that runs out (a replica died mid-send) makes the head due again.
local rid, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for _, dk in ipairs(redis.call('ZRANGEBYSCORE', ob_wait(rid), '-inf', now, 'LIMIT', 0, 1000)) do
  ob_schedule(rid, dk, now)
end
local best = redis.call('ZRANGE', ob_ready(rid), 0, 0)[1]
if not best then return nil end
local head = redis.call('LINDEX', ob_line(rid, best), 0)
local item = cjson.decode(redis.call('HGET', ITEMS, head))
item.lease = now + lease
redis.call('HSET', ITEMS, head, cjson.encode(item))
redis.call('ZREM', ob_ready(rid), best)
redis.call('ZADD', ob_wait(rid), now + lease, best)
return cjson.encode(item)
