-- take: unless the key is paused, lease the most urgent due head of the key's lines if
-- the budget window has room for it (a critical trigger, priority 0, may use the whole
-- window; the others `limit - reserve`), and stamp the window.
-- KEYS: 1 ob:items, 2 ob:ready:<rid>, 3 ob:wait:<rid>, 4 ob:age:<rid>, 5 bud:<rid>,
--   6 bud:seq, 7 pause:<rid>.
-- ARGV: 1 now, 2 lease (s), 3 limit, 4 window (s), 5 reserve.
-- Returns {event JSON, 0, stamp} or {false, seconds to wait as a string} ("inf": nothing queued).
local items, ready, wait, age = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local bud, budseq, pause = KEYS[5], KEYS[6], KEYS[7]
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, window, reserve = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('ZCARD', age) == 0 then return {false, 'inf'} end
local paused = tonumber(redis.call('GET', pause) or '0')
if paused > now then return {false, tostring(paused - now)} end
-- backoffs over and leases run out: their heads are ready again
for _, seq in ipairs(redis.call('ZRANGEBYSCORE', wait, '-inf', now, 'LIMIT', 0, 100)) do
  local item = cjson.decode(redis.call('HGET', items, seq))
  item.lease = 0
  redis.call('HSET', items, seq, cjson.encode(item))
  redis.call('ZREM', wait, seq)
  redis.call('ZADD', ready, item.prio * 1e13 + item.seq, seq)
end
local best = redis.call('ZRANGE', ready, 0, 0)[1]
if not best then
  local nxt = redis.call('ZRANGE', wait, 0, 0, 'WITHSCORES')
  if nxt[2] then return {false, tostring(math.max(0.001, tonumber(nxt[2]) - now))} end
  return {false, 'inf'}
end
local item = cjson.decode(redis.call('HGET', items, best))
redis.call('ZREMRANGEBYSCORE', bud, '-inf', now - window)
local n = redis.call('ZCARD', bud)
local allowed = limit - reserve
if item.prio == 0 then allowed = limit end
if n >= allowed then
  local t = redis.call('ZRANGE', bud, n - allowed, n - allowed, 'WITHSCORES')
  return {false, tostring(math.max(0.001, tonumber(t[2]) + window - now))}
end
local stamp = redis.call('INCR', budseq)
redis.call('ZADD', bud, now, stamp)
redis.call('EXPIRE', bud, math.ceil(window) + 3600)
item.lease = now + lease
redis.call('HSET', items, best, cjson.encode(item))
redis.call('ZREM', ready, best)
redis.call('ZADD', wait, now + lease, best)
return {cjson.encode(item), 0, stamp}
