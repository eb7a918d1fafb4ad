-- Shared outbox helpers, prepended to every script that touches the outbox.
-- Keys (P = KEYS[1], the hash-tagged prefix "{prefix}"; rid = a hash of the routing key):
--   P:ob:seq                 INCR counter of event numbers
--   P:ob:items               hash seq -> event JSON
--   P:ob:line:<rid>:<dk>     list of seqs, one dedup_key's events in order
--   P:ob:ready:<rid>         zset dk -> prio*1e13+seq: lines whose head may go now
--   P:ob:wait:<rid>          zset dk -> time: lines whose head waits (backoff or lease)
--   P:ob:keys                hash rid -> routing key, for keys with pending lines
--   P:ob:dead                hash seq -> event JSON
local P = KEYS[1]
local ITEMS = P .. ':ob:items'

local function ob_line(rid, dk) return P .. ':ob:line:' .. rid .. ':' .. dk end
local function ob_ready(rid) return P .. ':ob:ready:' .. rid end
local function ob_wait(rid) return P .. ':ob:wait:' .. rid end

-- Put the line's head in ready or wait, by its not_before; forget an empty line.
local function ob_schedule(rid, dk, now)
  local head = redis.call('LINDEX', ob_line(rid, dk), 0)
  if not head then
    redis.call('ZREM', ob_ready(rid), dk)
    redis.call('ZREM', ob_wait(rid), dk)
    if redis.call('ZCARD', ob_ready(rid)) + redis.call('ZCARD', ob_wait(rid)) == 0 then
      redis.call('HDEL', P .. ':ob:keys', rid)
    end
    return
  end
  local item = cjson.decode(redis.call('HGET', ITEMS, head))
  if item.not_before > now then
    redis.call('ZREM', ob_ready(rid), dk)
    redis.call('ZADD', ob_wait(rid), item.not_before, dk)
  else
    redis.call('ZREM', ob_wait(rid), dk)
    redis.call('ZADD', ob_ready(rid), item.prio * 1e13 + item.seq, dk)
  end
end

-- Append one event (a decoded table); a trigger replaces a pending trigger last in line.
local function ob_enqueue(ev, now)
  local line = ob_line(ev.rid, ev.dk)
  if ev.action == 'trigger' then
    local last = redis.call('LINDEX', line, -1)
    if last then
      local item = cjson.decode(redis.call('HGET', ITEMS, last))
      if item.action == 'trigger' and (item.lease or 0) <= now then
        item.body, item.severity = ev.body, ev.severity
        redis.call('HSET', ITEMS, last, cjson.encode(item))
        return
      end
    end
  end
  ev.seq = redis.call('INCR', P .. ':ob:seq')
  ev.attempts, ev.not_before, ev.lease, ev.last_error = ev.attempts or 0, ev.not_before or 0, 0, ev.last_error or ''
  redis.call('HSET', ITEMS, ev.seq, cjson.encode(ev))
  redis.call('RPUSH', line, ev.seq)
  redis.call('HSET', P .. ':ob:keys', ev.rid, ev.rk)
  if redis.call('LLEN', line) == 1 then
    ob_schedule(ev.rid, ev.dk, now)
  end
end

-- Take seq off the head of its line (if it is there) and schedule the next head.
local function ob_pop(rid, dk, seq, now)
  local line = ob_line(rid, dk)
  redis.call('LREM', line, 1, seq)
  local raw = redis.call('HGET', ITEMS, seq)
  redis.call('HDEL', ITEMS, seq)
  ob_schedule(rid, dk, now)
  return raw
end
