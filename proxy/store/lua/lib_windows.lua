-- Shared window helpers. Keys (P = KEYS[1]):
--   P:g:<key>    hash: the group's fields (rule, routing_key, key_name, group_labels JSON,
--                group_interval, resolve_wait, opened_at, due, triggered, grown,
--                last_trigger_at, last_flush_at, overflow, version)
--   P:ga:<key>   hash fingerprint -> alert JSON (opaque here)
--   P:gs:<key>   hash fingerprint -> status (firing | resolved)
--   P:due        zset group key -> due time
--   P:fp:<fp>    set of the group keys holding that fingerprint
local P = KEYS[1]
local function g_key(k) return P .. ':g:' .. k end
local function ga_key(k) return P .. ':ga:' .. k end
local function gs_key(k) return P .. ':gs:' .. k end
local function fp_key(fp) return P .. ':fp:' .. fp end
local DUE = P .. ':due'

-- The scheduling rule of store/base.py, for one alert of one group.
local function put_alert(k, fp, status, json, full, max_alerts, now)
  local prev = redis.call('HGET', gs_key(k), fp)
  if not prev then
    if status ~= 'firing' then return end
    if redis.call('HLEN', gs_key(k)) >= max_alerts then
      redis.call('HINCRBY', g_key(k), 'overflow', 1)
      return
    end
    redis.call('SADD', fp_key(fp), k)
  end
  if full or not prev then redis.call('HSET', ga_key(k), fp, json) end
  if prev == status then return end
  redis.call('HSET', gs_key(k), fp, status)
  redis.call('HINCRBY', g_key(k), 'version', 1)
  if redis.call('HGET', g_key(k), 'triggered') == '1' then
    local f = redis.call('HMGET', g_key(k), 'group_interval', 'resolve_wait', 'last_flush_at', 'due')
    local wait
    if status == 'firing' then
      redis.call('HSET', g_key(k), 'grown', '1')
      wait = tonumber(f[1])
    else
      wait = tonumber(f[2])
    end
    local at = math.max(now, tonumber(f[3]) + wait)
    if at < tonumber(f[4]) then
      redis.call('HSET', g_key(k), 'due', tostring(at))
      redis.call('ZADD', DUE, at, k)
    end
  end
end
