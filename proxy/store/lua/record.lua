-- record: a whole request's alerts into their groups, atomically, in one round trip.
-- KEYS: 1 due:u, 2 due:n, 3 ob:items, 4 ob:seq, 5 ob:keys, 6 ob:names, 7 heads, 8 sizes,
--   then the keys the request names by index in ARGV[1].
-- ARGV[1]: JSON {now, ttl, tomb, kept, step (model.SEEN_STEP), max (open groups at most),
--   g: {group key: [i_g, i_ga, i_gs, i_tomb (0 but for candidates), meta or false]},
--      meta = [rule, routing_key, key_name, group_labels JSON, group_wait, group_interval,
--      resolve_wait, head JSON]
--   e: [[group key, fp, i_fpkey, alert JSON, max_alerts, urgent]]          firing entries
--   r: [[fp, i_fpkey, i_marks_of, alert JSON, full, [[group key, event, [i_lines, i_ready,
--        i_wait, i_age]]...]]]                     resolved alerts with their candidates
--   m: [[i_mark, i_marks_of, mark, fp]]                 inhibition marks of firing sources
--   mk: {mark: i_mark}                                   every mark key declared}
-- A resolved alert's groups and marks are known only here (SMEMBERS), and so is whether a
-- group is open: if one was not declared, or a group to open came without its meta (the
-- caller sends it only for groups it has not seen open), nothing is written and the
-- answer is {"missing": {"groups": [...], "marks": [...], "meta": [...]}}; the caller
-- declares them and calls again. If the entries would open more groups than `max` allows,
-- nothing is written and the answer is {"full": max}. Else returns {resolves enqueued for
-- lost groups, alerts fired, alerts resolved} (store.base.Recorded).
local R = cjson.decode(ARGV[1])
local now, ttl, kept, step = R.now, R.ttl, R.kept, R.step
local DUE_U, DUE_N = KEYS[1], KEYS[2]
local F = {items = KEYS[3], seq = KEYS[4], keys = KEYS[5], names = KEYS[6]}

local function G(k)
  local i = R.g[k]
  return {g = KEYS[i[1]], ga = KEYS[i[2]], gs = KEYS[i[3]], tomb = KEYS[i[4]]}
end

-- 1. Everything declared?
local miss_g, miss_m = {}, {}
for _, r in ipairs(R.r) do
  for _, k in ipairs(redis.call('SMEMBERS', KEYS[r[2]])) do
    if not R.g[k] then miss_g[#miss_g + 1] = k end
  end
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[r[3]])) do
    if not R.mk[m] then miss_m[#miss_m + 1] = m end
  end
end
-- Each group's fields are read once (T: false for a group that is not open).
local T = {}
local function fields(k)
  if T[k] == nil then T[k] = gload(G(k)) or false end
  return T[k]
end
local opening, miss_meta = 0, {}
for _, e in ipairs(R.e) do
  if T[e[1]] == nil and not fields(e[1]) then
    opening = opening + 1
    if not R.g[e[1]][5] then miss_meta[#miss_meta + 1] = e[1] end
  end
end
if #miss_g > 0 or #miss_m > 0 or #miss_meta > 0 then
  return cjson.encode({missing = {groups = miss_g, marks = miss_m, meta = miss_meta}})
end
if opening > 0 and redis.call('ZCARD', DUE_U) + redis.call('ZCARD', DUE_N) + opening > R.max then
  return cjson.encode({full = R.max})
end

-- 2. Firing entries, opening groups as needed.
-- `changed`: fingerprint -> fired | resolved, each alert once (Recorded).
local changed = {}
for _, e in ipairs(R.e) do
  local k, fp = e[1], e[2]
  local g = G(k)
  local t = fields(k)
  if not t then
    local m = R.g[k][5]
    local urgent = e[6] and '1' or '0'
    local ts = string.format('%.17g', now)
    redis.call('HSET', g.g, 'rule', m[1], 'routing_key', m[2], 'key_name', m[3],
      'group_labels', m[4], 'group_interval', tostring(m[6]), 'resolve_wait', tostring(m[7]),
      'opened_at', ts, 'triggered', '0', 'grown', '0', 'last_trigger_at', '0',
      'last_flush_at', '0', 'overflow', '0', 'version', '0', 'last_seen', ts, 'urgent', urgent,
      'state', '{}', 'n', '0', 'ttl_at', '0')
    redis.call('ZADD', urgent == '1' and DUE_U or DUE_N, now + m[5], k)
    redis.call('HSET', KEYS[7], k, m[8])
    t = gload(g)
    t.n0 = -1  -- (its size is written whatever it holds)
    T[k] = t
  end
  if e[6] and t.urgent ~= '1' then
    local due = redis.call('ZSCORE', DUE_N, k)
    t.urgent = '1'
    redis.call('ZREM', DUE_N, k)
    if due then redis.call('ZADD', DUE_U, due, k) end
  end
  if put_alert(g, t, k, fp, 'firing', e[4], true, e[5], now, KEYS[e[3]], DUE_U, DUE_N, ttl, kept, step) then
    changed[fp] = 'fired'
  end
end

-- 3. Inhibition marks left by firing sources.
for _, m in ipairs(R.m) do
  redis.call('SADD', KEYS[m[1]], m[4])
  redis.call('EXPIRE', KEYS[m[1]], ttl)
  redis.call('SADD', KEYS[m[2]], m[3])
  redis.call('EXPIRE', KEYS[m[2]], ttl)
end

-- 4. Resolved alerts: every group holding them; else their lost candidates.
local lost = 0
for _, r in ipairs(R.r) do
  local fp = r[1]
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[r[3]])) do
    redis.call('SREM', KEYS[R.mk[m]], fp)
  end
  redis.call('DEL', KEYS[r[3]])
  local held = redis.call('SMEMBERS', KEYS[r[2]])
  for _, k in ipairs(held) do
    local t = fields(k)
    if t and put_alert(G(k), t, k, fp, 'resolved', r[4], r[5], 1e18, now, KEYS[r[2]], DUE_U, DUE_N,
                       ttl, kept, step) then
      changed[fp] = changed[fp] or 'resolved'
    end
  end
  if #held == 0 then
    for _, c in ipairs(r[6]) do
      local g = G(c[1])
      if redis.call('EXISTS', g.g) == 0 and redis.call('EXISTS', g.tomb) == 0 then
        redis.call('SET', g.tomb, '1', 'EX', R.tomb)
        local o = c[3]
        lost = lost + ob_enqueue(F, {lines = KEYS[o[1]], ready = KEYS[o[2]], wait = KEYS[o[3]],
                                     age = KEYS[o[4]]}, c[2], now)
      end
    end
  end
end

-- 5. The groups' fields, written once.
for k, t in pairs(T) do
  if t then gsave(G(k), t, now, ttl, k, KEYS[8]) end
end
local fired, resolved = 0, 0
for _, how in pairs(changed) do
  if how == 'fired' then fired = fired + 1 else resolved = resolved + 1 end
end
return {lost, fired, resolved}
