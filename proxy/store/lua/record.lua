-- KEYS[1] = prefix; ARGV[1] = now (s); ARGV[2] = JSON array of entries
--   [group_key, meta (object), fingerprint, status, alert JSON, group_wait, max_alerts];
-- ARGV[3] = JSON array of resolved alerts [fingerprint, alert JSON, full];
-- ARGV[4] = TTL (s) of a group's keys; ARGV[5] = JSON array of inhibition marks
--   [mark, fingerprint] left by firing source alerts (P:inh:<mark> set of fingerprints,
--   P:inhfp:<fp> set of marks; a resolved fingerprint leaves all its marks).
-- Atomically record a whole request's alerts in their groups (one round trip), opening
-- groups as needed, and apply resolved alerts to every open group that holds them.
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[4])
local touched = {}
for _, e in ipairs(cjson.decode(ARGV[2])) do
  local k, meta, fp, status = e[1], e[2], e[3], e[4]
  if touched[k] == nil and redis.call('EXISTS', g_key(k)) == 0 then
    if status == 'firing' then
      local due = now + e[6]
      redis.call('HSET', g_key(k), 'rule', meta.rule, 'routing_key', meta.routing_key,
        'key_name', meta.key_name, 'group_labels', cjson.encode(meta.group_labels),
        'group_interval', tostring(meta.group_interval), 'resolve_wait', tostring(meta.resolve_wait),
        'opened_at', tostring(now), 'due', tostring(due), 'triggered', '0', 'grown', '0',
        'last_trigger_at', '0', 'last_flush_at', '0', 'overflow', '0', 'version', '0')
      redis.call('ZADD', DUE, due, k)
      touched[k] = true
    else
      touched[k] = false
    end
  elseif touched[k] == nil then
    touched[k] = true
  end
  if touched[k] then put_alert(k, fp, status, e[5], true, e[7], now) end
end
for _, m in ipairs(cjson.decode(ARGV[5])) do
  redis.call('SADD', P .. ':inh:' .. m[1], m[2])
  redis.call('EXPIRE', P .. ':inh:' .. m[1], ttl)
  redis.call('SADD', P .. ':inhfp:' .. m[2], m[1])
  redis.call('EXPIRE', P .. ':inhfp:' .. m[2], ttl)
end
for _, o in ipairs(cjson.decode(ARGV[3])) do
  for _, m in ipairs(redis.call('SMEMBERS', P .. ':inhfp:' .. o[1])) do
    redis.call('SREM', P .. ':inh:' .. m, o[1])
  end
  redis.call('DEL', P .. ':inhfp:' .. o[1])
  for _, k in ipairs(redis.call('SMEMBERS', fp_key(o[1]))) do
    put_alert(k, o[1], 'resolved', o[2], o[3], 1e9, now)
    touched[k] = true
  end
end
for k, live in pairs(touched) do
  if live then
    redis.call('EXPIRE', g_key(k), ttl)
    redis.call('EXPIRE', ga_key(k), ttl)
    redis.call('EXPIRE', gs_key(k), ttl)
  end
end
return 1
