-- KEYS[1] = prefix; ARGV[1] = group key, ARGV[2] = expected version, ARGV[3] = "1" to
-- delete, ARGV[4] = JSON of fields to store, ARGV[5] = JSON array of events, ARGV[6] = now,
-- ARGV[7] = TTL (s).
-- Atomically, if the group is still at the expected version: store (or delete) it and
-- enqueue its events. Returns 0 when the group changed meanwhile (decide again).
local k, now = ARGV[1], tonumber(ARGV[6])
if redis.call('HGET', g_key(k), 'version') ~= ARGV[2] then return 0 end
if ARGV[3] == '1' then
  for _, fp in ipairs(redis.call('HKEYS', gs_key(k))) do redis.call('SREM', fp_key(fp), k) end
  redis.call('DEL', g_key(k), ga_key(k), gs_key(k))
  redis.call('ZREM', DUE, k)
else
  local f = cjson.decode(ARGV[4])
  for name, value in pairs(f) do redis.call('HSET', g_key(k), name, tostring(value)) end
  redis.call('ZADD', DUE, f.due, k)
  local ttl = tonumber(ARGV[7])
  redis.call('EXPIRE', g_key(k), ttl)
  redis.call('EXPIRE', ga_key(k), ttl)
  redis.call('EXPIRE', gs_key(k), ttl)
end
for _, ev in ipairs(cjson.decode(ARGV[5])) do ob_enqueue(ev, now) end
return 1
