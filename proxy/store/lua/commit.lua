-- commit: a batch of flushed groups, each atomically: if its version is unchanged, store
-- its flush state with the version bumped (or delete it, leaving a tombstone) and
-- enqueue its events. Returns a list of 1 (done) / 0 (the group changed: decide again).
-- KEYS: 1 due:u, 2 due:n, 3 ob:items, 4 ob:seq, 5 ob:keys, 6 ob:names, 7 heads, 8 sizes,
--   then by index.
-- ARGV[1]: JSON {now, ttl, tomb, c: [[i_g, i_ga, i_gs, i_tomb, group key, version,
--   delete, fields {due, triggered, grown, last_trigger_at, last_flush_at, state},
--   [i_fpkey...] (delete: the group's fingerprints), [[event, [i_lines, i_ready, i_wait,
--   i_age], i_body]...], head JSON]]}; ARGV[i_body]: that event's body as a JSON string.
local R = cjson.decode(ARGV[1])
local DUE_U, DUE_N = KEYS[1], KEYS[2]
local F = {items = KEYS[3], seq = KEYS[4], keys = KEYS[5], names = KEYS[6]}
local out = {}
for _, c in ipairs(R.c) do
  local g, ga, gs, tomb, k = KEYS[c[1]], KEYS[c[2]], KEYS[c[3]], KEYS[c[4]], c[5]
  local cur = redis.call('HMGET', g, 'version', 'urgent', 'ttl_at')
  if cur[1] ~= tostring(c[6]) then
    out[#out + 1] = 0
  else
    if c[7] then
      for _, i in ipairs(c[9]) do redis.call('SREM', KEYS[i], k) end
      redis.call('DEL', g, ga, gs)
      redis.call('ZREM', DUE_U, k)
      redis.call('ZREM', DUE_N, k)
      redis.call('SET', tomb, '1', 'EX', R.tomb)
      redis.call('HDEL', KEYS[7], k)
      redis.call('HDEL', KEYS[8], k)
    else
      local f = c[8]
      redis.call('HSET', g, 'triggered', f.triggered, 'grown', f.grown,
        'last_trigger_at', f.last_trigger_at, 'last_flush_at', f.last_flush_at, 'state', f.state,
        'version', c[6] + 1)
      redis.call('HSET', KEYS[7], k, c[11])
      if cur[2] == '1' then  -- record may have made it urgent
        redis.call('ZADD', DUE_U, f.due, k)
      else
        redis.call('ZADD', DUE_N, f.due, k)
      end
      if R.now - tonumber(cur[3] or '0') > 86400 then  -- as gsave (lib_windows.lua)
        redis.call('HSET', g, 'ttl_at', string.format('%.17g', R.now))
        redis.call('EXPIRE', g, R.ttl)
        redis.call('EXPIRE', ga, R.ttl)
        redis.call('EXPIRE', gs, R.ttl)
      end
    end
    for _, e in ipairs(c[10]) do
      local o = e[2]
      ob_enqueue(F, {lines = KEYS[o[1]], ready = KEYS[o[2]], wait = KEYS[o[3]], age = KEYS[o[4]]},
                 e[1], R.now, ARGV[e[3]])
    end
    out[#out + 1] = 1
  end
end
return out
