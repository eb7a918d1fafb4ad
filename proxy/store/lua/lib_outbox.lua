-- Outbox helpers, prepended to the scripts that touch the outbox. Every key comes from
-- KEYS (see keys.py): F = {items=, seq=, keys=, names=} are the shared ones, and a
-- routing key's are O = {lines=, ready=, wait=, age=}.
--   items  hash seq -> event JSON {rid, rk, dk, action, severity, prio, body, key_name,
--          enqueued_at, attempts, not_before, last_error, lease, seq}
--   lines  hash dk -> "seq seq ...": one dedup_key's events, in order
--   ready  zset seq -> prio*1e13+seq: line heads that may go now
--   wait   zset seq -> time: line heads waiting for a backoff or a lease to end
--   age    zset seq -> enqueued_at: every pending event of the key (depth, oldest)

local function ob_head(line)
  return string.match(line or '', '^(%d+)')
end

-- Put the line head `seq` in ready or wait, by its not_before.
local function ob_schedule(F, O, seq, now)
  local item = cjson.decode(redis.call('HGET', F.items, seq))
  if item.not_before > now then
    redis.call('ZREM', O.ready, seq)
    redis.call('ZADD', O.wait, item.not_before, seq)
  else
    redis.call('ZREM', O.wait, seq)
    redis.call('ZADD', O.ready, item.prio * 1e13 + item.seq, seq)
  end
end

-- An item's JSON. `lit`, when given, is its body already as a JSON string literal (the
-- caller's ARGV): a body of kilobytes is then never decoded or encoded here.
local function ob_item(item, lit)
  if not lit then return cjson.encode(item) end
  item.body = nil
  local head = cjson.encode(item)
  return string.sub(head, 1, -2) .. ',"body":' .. lit .. '}'
end

-- Append one event (a decoded table; its body in ev.body, or as `lit`: see ob_item); a
-- trigger replaces a pending trigger last in line.
local function ob_enqueue(F, O, ev, now, lit)
  local line = redis.call('HGET', O.lines, ev.dk)
  if ev.action == 'trigger' and line then
    local last = string.match(line, '(%d+)$')
    local item = cjson.decode(redis.call('HGET', F.items, last))
    if item.action == 'trigger' and (item.lease or 0) <= now then
      item.body, item.severity, item.prio = ev.body, ev.severity, ev.prio
      redis.call('HSET', F.items, last, ob_item(item, lit))
      if ob_head(line) == last and redis.call('ZSCORE', O.ready, last) then
        redis.call('ZADD', O.ready, item.prio * 1e13 + item.seq, last)
      end
      return 0
    end
  end
  ev.seq = redis.call('INCR', F.seq)
  ev.attempts, ev.not_before, ev.lease = ev.attempts or 0, ev.not_before or 0, 0
  ev.last_error = ev.last_error or ''
  redis.call('HSET', F.items, ev.seq, ob_item(ev, lit))
  redis.call('ZADD', O.age, ev.enqueued_at, ev.seq)
  F.named = F.named or {}
  if F.named[ev.rid] ~= ev.key_name then  -- once per key and script call
    redis.call('HSET', F.keys, ev.rid, ev.rk)
    redis.call('HSET', F.names, ev.rid, ev.key_name)
    F.named[ev.rid] = ev.key_name
  end
  if line then
    redis.call('HSET', O.lines, ev.dk, line .. ' ' .. ev.seq)
  elseif ev.not_before > now then
    redis.call('HSET', O.lines, ev.dk, tostring(ev.seq))
    redis.call('ZADD', O.wait, ev.not_before, ev.seq)
  else  -- a new line's head, ready now (a new seq is in no zset yet)
    redis.call('HSET', O.lines, ev.dk, tostring(ev.seq))
    redis.call('ZADD', O.ready, ev.prio * 1e13 + ev.seq, ev.seq)
  end
  return 1
end

-- Take seq out of its line; the next of the line becomes its head. Returns the item JSON.
local function ob_pop(F, O, rid, dk, seq, now)
  local raw = redis.call('HGET', F.items, seq)
  if not raw then return nil end
  redis.call('HDEL', F.items, seq)
  redis.call('ZREM', O.ready, seq)
  redis.call('ZREM', O.wait, seq)
  redis.call('ZREM', O.age, seq)
  local rest = {}
  for s in string.gmatch(redis.call('HGET', O.lines, dk) or '', '%d+') do
    if s ~= tostring(seq) then rest[#rest + 1] = s end
  end
  if #rest == 0 then
    redis.call('HDEL', O.lines, dk)
  else
    redis.call('HSET', O.lines, dk, table.concat(rest, ' '))
    ob_schedule(F, O, rest[1], now)
  end
  if redis.call('ZCARD', O.age) == 0 then
    redis.call('HDEL', F.keys, rid)
    redis.call('HDEL', F.names, rid)
  end
  return raw
end

-- The budget stamp now holds the answer's time (never earlier than it was).
local function settle(bud, stamp, now)
  if stamp and stamp ~= 0 then redis.call('ZADD', bud, 'XX', 'GT', now, stamp) end
end
