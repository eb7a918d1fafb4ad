-- Window helpers, prepended to the scripts that touch groups. Every key comes from KEYS
-- (see keys.py); a group is a table G = {g=, ga=, gs=, tomb=} of its key names.
--   g   hash: rule, routing_key, key_name, group_labels (JSON), group_interval,
--       resolve_wait, opened_at, triggered, grown, last_trigger_at, last_flush_at,
--       overflow, version, last_seen, urgent, state (JSON)
--   ga  hash fingerprint -> alert JSON (opaque here)
--   gs  hash fingerprint -> "status|t1|t2..." (the times its status changed)

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

local function lane(G, due_u, due_n)
  if redis.call('HGET', G.g, 'urgent') == '1' then return due_u end
  return due_n
end

-- One alert into one group, by the scheduling rule of store/base.py.
-- fpkey: the fingerprint's set of groups (only used when the alert is new here).
local function put_alert(G, k, fp, status, json, full, max_alerts, now, fpkey, due_u, due_n, ttl, kept)
  redis.call('HSET', G.g, 'last_seen', string.format('%.17g', now))
  local raw = redis.call('HGET', G.gs, fp)
  if not raw then
    if status ~= 'firing' then return end
    if redis.call('HLEN', G.gs) >= max_alerts then
      redis.call('HINCRBY', G.g, 'overflow', 1)
      return
    end
    redis.call('SADD', fpkey, k)
    redis.call('EXPIRE', fpkey, ttl)
    redis.call('HSET', G.ga, fp, json)
    redis.call('HSET', G.gs, fp, status)
  else
    if full then redis.call('HSET', G.ga, fp, json) end
    local prev, changes = split_status(raw)
    if prev == status then return end
    redis.call('HSET', G.gs, fp, with_change(status, changes, now, kept))
  end
  redis.call('HINCRBY', G.g, 'version', 1)
  local f = redis.call('HMGET', G.g, 'last_flush_at', 'triggered', 'group_interval', 'resolve_wait')
  local last_flush = tonumber(f[1])
  if last_flush > 0 then
    local wait = tonumber(f[4])
    if status == 'firing' then
      wait = tonumber(f[3])
      if f[2] == '1' then redis.call('HSET', G.g, 'grown', '1') end
    end
    local at = math.max(now, last_flush + wait)
    local zset = lane(G, due_u, due_n)
    local cur = tonumber(redis.call('ZSCORE', zset, k))
    if cur and at < cur then redis.call('ZADD', zset, at, k) end
  end
end
