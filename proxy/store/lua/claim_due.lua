-- KEYS[1] = prefix; ARGV[1] = now, ARGV[2] = lease (s), ARGV[3] = limit.
-- Atomically take the groups due at now, pushing them to now + lease so that no other
-- replica flushes them meanwhile (a replica that dies mid-flush loses them for a lease).
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local keys = redis.call('ZRANGEBYSCORE', DUE, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, k in ipairs(keys) do
  if redis.call('EXISTS', g_key(k)) == 1 then
    redis.call('ZADD', DUE, now + lease, k)
    redis.call('HSET', g_key(k), 'due', tostring(now + lease))
  else
    redis.call('ZREM', DUE, k)  -- expired by its TTL
  end
end
return keys
