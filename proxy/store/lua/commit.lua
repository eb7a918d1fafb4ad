-- commit: a batch of flushed groups, each atomically: if its version is unchanged, store
-- its flush state with the version bumped (or delete it, leaving a tombstone) and
-- enqueue its events. Returns a list of 1 (done) / 0 (the group changed: decide again).
-- KEYS: 1 due:u, 2 due:n, 3 ob:items, 4 ob:seq, 5 ob:keys, 6 ob:names, 7 heads, 8 sizes,
--   then by index.
-- ARGV[1]: JSON {now, ttl, tomb, c: [[i_g, i_ga, i_gs, i_tomb, group key, version, delete,
--   due, triggered, grown, last_trigger_at, last_flush_at, i_state, i_head, [i_fpkey...]
--   (delete: the group's fingerprints), [event...] (see ob_events)]]}; the other ARGV are
--   strings the request names by index: states and heads (JSON, stored as they are), and
--   the events' items and bodies.
local R = cjson.decode(ARGV[1])
local DUE_U, DUE_N, HEADS, SIZES = KEYS[1], KEYS[2], KEYS[7], KEYS[8]
local F = {items = KEYS[3], seq = KEYS[4], keys = KEYS[5], names = KEYS[6]}
local out, heads, due_u, due_n, E = {}, {}, {}, {}, {}
for _, c in ipairs(R.c) do
  local g, ga, gs, tomb, k = KEYS[c[1]], KEYS[c[2]], KEYS[c[3]], KEYS[c[4]], c[5]
  local cur = redis.call('HMGET', g, 'version', 'urgent', 'ttl_at')
  if cur[1] ~= tostring(c[6]) then
    out[#out + 1] = 0
  else
    if c[7] then
      for _, i in ipairs(c[15]) do redis.call('SREM', KEYS[i], k) end
      redis.call('DEL', g, ga, gs)
      redis.call('ZREM', DUE_U, k)
      redis.call('ZREM', DUE_N, k)
      redis.call('SET', tomb, '1', 'EX', R.tomb)
      redis.call('HDEL', HEADS, k)
      redis.call('HDEL', SIZES, k)
    else
      redis.call('HSET', g, 'triggered', c[9], 'grown', c[10], 'last_trigger_at', c[11],
        'last_flush_at', c[12], 'state', ARGV[c[13]], 'version', c[6] + 1)
      heads[#heads + 1] = k
      heads[#heads + 1] = ARGV[c[14]]
      local due = cur[2] == '1' and due_u or due_n  -- record may have made it urgent
      due[#due + 1] = c[8]
      due[#due + 1] = k
      if R.now - tonumber(cur[3] or '0') > 86400 then  -- as gsave (lib_windows.lua)
        redis.call('HSET', g, 'ttl_at', string.format('%.17g', R.now))
        redis.call('EXPIRE', g, R.ttl)
        redis.call('EXPIRE', ga, R.ttl)
        redis.call('EXPIRE', gs, R.ttl)
      end
    end
    ob_events(c[16], E)
    out[#out + 1] = 1
  end
end
if #heads > 0 then bulk('HSET', HEADS, heads) end
if #due_u > 0 then bulk('ZADD', DUE_U, due_u) end
if #due_n > 0 then bulk('ZADD', DUE_N, due_n) end
ob_enqueue_many(F, E, R.now)
return out
