-- Window helpers, prepended to the scripts that touch groups. Every key comes from KEYS
-- (see keys.py); a group is a table G = {g=, ga=, gs=, tomb=} of its key names.
--   g   hash: rule, routing_key, key_name, group_labels (JSON), group_interval,
--       resolve_wait, opened_at, triggered, grown, last_trigger_at, last_flush_at,
--       overflow, version, last_seen, urgent, state (JSON), n (alerts held), ttl_at
--   ga  hash fingerprint -> alert JSON (opaque here)
--   gs  hash fingerprint -> "status|t1|t2..." (the times its status changed)
-- A script reads a group's fields once (gload), changes them in a Lua table, and writes
-- them back once (gsave): the cost of a request is its alerts, not its groups' fields.

local GFIELDS = {'version', 'overflow', 'n', 'last_flush_at', 'triggered', 'group_interval',
                 'resolve_wait', 'urgent', 'grown', 'last_seen', 'ttl_at'}

local function gload(G)
  local v = redis.call('HMGET', G.g, unpack(GFIELDS))
  if not v[1] then return nil end
  local t = {}
  for i, name in ipairs(GFIELDS) do t[name] = v[i] end
  t.version, t.overflow, t.n = tonumber(t.version), tonumber(t.overflow), tonumber(t.n)
  t.last_flush_at, t.group_interval = tonumber(t.last_flush_at), tonumber(t.group_interval)
  t.resolve_wait, t.ttl_at = tonumber(t.resolve_wait), tonumber(t.ttl_at or '0')
  t.n0 = t.n  -- (the size as read: written back only if it changed)
  t.was = {t.version, t.overflow, t.last_seen, t.urgent}  -- (grown moves with version)
  return t
end

-- Write the fields back if any changed (and the size to `sizes`, the console's and the
-- claim's count, if it changed); refresh the TTLs at most once a day (they are a week).
local function gsave(G, t, now, ttl, k, sizes)
  local w = t.was
  if t.version ~= w[1] or t.overflow ~= w[2] or t.last_seen ~= w[3] or t.urgent ~= w[4] then
    redis.call('HSET', G.g, 'version', t.version, 'overflow', t.overflow, 'n', t.n,
      'grown', t.grown, 'last_seen', t.last_seen, 'urgent', t.urgent)
  end
  if t.n ~= t.n0 then redis.call('HSET', sizes, k, t.n) end
  if now - t.ttl_at > 86400 then
    redis.call('HSET', G.g, 'ttl_at', string.format('%.17g', now))
    redis.call('EXPIRE', G.g, ttl)
    redis.call('EXPIRE', G.ga, ttl)
    redis.call('EXPIRE', G.gs, ttl)
  end
end

-- "firing|1.5|2.5" -> "firing", "1.5|2.5"
local function split_status(raw)
  local bar = string.find(raw, '|', 1, true)
  if not bar then return raw, '' end
  return string.sub(raw, 1, bar - 1), string.sub(raw, bar + 1)
end

-- The status with one more change time, keeping the last `kept`.
local function with_change(status, changes, now, kept)
  local times = {}
  for t in string.gmatch(changes, '[^|]+') do times[#times + 1] = t end
  times[#times + 1] = string.format('%.17g', now)
  local from = math.max(1, #times - kept + 1)
  local out = {status}
  for i = from, #times do out[#out + 1] = times[i] end
  return table.concat(out, '|')
end

-- One alert into one group (t: its fields from gload), by the scheduling rule of
-- store/base.py; last_seen moves in steps of `step` (model.SEEN_STEP). fpkey: the
-- fingerprint's set of groups (used when the alert is new here). Returns 'fired' or
-- 'resolved' when the alert's status changed (semantics.Put), else nil.
local function put_alert(G, t, k, fp, status, json, full, max_alerts, now, fpkey, due_u, due_n, ttl, kept, step)
  if now - tonumber(t.last_seen) >= step then t.last_seen = string.format('%.17g', now) end
  local raw = redis.call('HGET', G.gs, fp)
  if not raw then
    if status ~= 'firing' then return end
    if t.n >= max_alerts then
      t.overflow = t.overflow + 1
      return
    end
    if redis.call('SADD', fpkey, k) == 1 then redis.call('EXPIRE', fpkey, ttl) end
    redis.call('HSET', G.ga, fp, json)
    redis.call('HSET', G.gs, fp, status)
    t.n = t.n + 1
  else
    -- (an alert sent again unchanged writes nothing: the AOF and the replicas never see it)
    if full and redis.call('HGET', G.ga, fp) ~= json then redis.call('HSET', G.ga, fp, json) end
    local prev, changes = split_status(raw)
    if prev == status then return end
    redis.call('HSET', G.gs, fp, with_change(status, changes, now, kept))
  end
  t.version = t.version + 1
  if t.last_flush_at > 0 then
    local wait = t.resolve_wait
    if status == 'firing' then
      wait = t.group_interval
      if t.triggered == '1' then t.grown = '1' end
    end
    local at = math.max(now, t.last_flush_at + wait)
    local zset = due_n
    if t.urgent == '1' then zset = due_u end
    local cur = tonumber(redis.call('ZSCORE', zset, k))
    if cur and at < cur then redis.call('ZADD', zset, at, k) end
  end
  if status == 'firing' then return 'fired' end
  return 'resolved'
end
