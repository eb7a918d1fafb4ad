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

-- Run a variadic command over `args` in chunks (Lua's unpack has a limit), `step`
-- arguments at a time (a multiple of the pair size).
local function bulk(cmd, key, args, step)
  step = step or 1000
  for i = 1, #args, step do
    redis.call(cmd, key, unpack(args, i, math.min(#args, i + step - 1)))
  end
end

-- The writes a batch of appends accumulates: one variadic command per kind and outbox
-- (ob_flush), not one per event.
local function ob_pending()
  return {items = {}, outboxes = {}, order = {}}
end

local function ob_outbox(P, O)
  local o = P.outboxes[O.lines]
  if not o then
    o = {O = O, line = {}, known = {}, lines = {}, age = {}, ready = {}, wait = {}, touched = {}}
    P.outboxes[O.lines] = o
    P.order[#P.order + 1] = o
  end
  return o
end

local function ob_flush(F, P)
  if #P.items > 0 then bulk('HSET', F.items, P.items) end
  for _, o in ipairs(P.order) do
    local pairs_ = {}
    for dk, line in pairs(o.lines) do
      pairs_[#pairs_ + 1] = dk
      pairs_[#pairs_ + 1] = line
    end
    if #pairs_ > 0 then bulk('HSET', o.O.lines, pairs_) end
    if #o.age > 0 then bulk('ZADD', o.O.age, o.age) end
    if #o.ready > 0 then bulk('ZADD', o.O.ready, o.ready) end
    if #o.wait > 0 then bulk('ZADD', o.O.wait, o.wait) end
    o.lines, o.age, o.ready, o.wait, o.touched = {}, {}, {}, {}, {}
  end
  P.items = {}
end

-- Append events, in order; a trigger replaces a pending trigger last in its line. Each of
-- E is {O = a routing key's outbox keys, ev = {rid, rk, dk, action, severity, prio,
-- key_name, enqueued_at, not_before, ...}, lit = its body as a JSON string literal (see
-- ob_item), small = the item's JSON without seq and body, from the caller (no encoding
-- here), or nil}. The lines are read with one HMGET per outbox, and the writes go out in
-- one command per kind. Returns how many events took a new place.
local function ob_enqueue_many(F, E, now)
  if #E == 0 then return 0 end
  local P = ob_pending()
  local want = {}
  for _, e in ipairs(E) do
    local o = ob_outbox(P, e.O)
    if not o.known[e.ev.dk] then
      o.known[e.ev.dk] = true
      want[o] = want[o] or {}
      table.insert(want[o], e.ev.dk)
    end
  end
  for o, dks in pairs(want) do
    for i = 1, #dks, 1000 do
      local chunk = {unpack(dks, i, math.min(#dks, i + 999))}
      local raw = redis.call('HMGET', o.O.lines, unpack(chunk))
      for j, dk in ipairs(chunk) do o.line[dk] = raw[j] or nil end
    end
  end
  local top = redis.call('INCRBY', F.seq, #E)  -- one seq per event; a replace leaves a gap
  local placed = 0
  for i, e in ipairs(E) do
    local ev, o = e.ev, ob_outbox(P, e.O)
    if o.touched[ev.dk] then ob_flush(F, P) end  -- its line changed in this batch
    o.touched[ev.dk] = true
    local line = o.line[ev.dk]
    local replaced = false
    if ev.action == 'trigger' and line then
      local last = string.match(line, '(%d+)$')
      local item = cjson.decode(redis.call('HGET', F.items, last))
      if item.action == 'trigger' and (item.lease or 0) <= ev.enqueued_at then  -- semantics.coalesces
        item.body, item.severity, item.prio = ev.body, ev.severity, ev.prio
        redis.call('HSET', F.items, last, ob_item(item, e.lit))
        if ob_head(line) == last and redis.call('ZSCORE', e.O.ready, last) then
          redis.call('ZADD', e.O.ready, item.prio * 1e13 + item.seq, last)
        end
        replaced = true
      end
    end
    if not replaced then
      local seq = top - #E + i
      ev.seq = seq
      ev.attempts, ev.not_before, ev.lease = ev.attempts or 0, ev.not_before or 0, 0
      ev.last_error = ev.last_error or ''
      P.items[#P.items + 1] = seq
      if e.small then
        P.items[#P.items + 1] = '{"seq":' .. seq .. ',' .. string.sub(e.small, 2, -2) ..
          ',"body":' .. e.lit .. '}'
      else
        P.items[#P.items + 1] = ob_item(ev, e.lit)
      end
      o.age[#o.age + 1] = ev.enqueued_at
      o.age[#o.age + 1] = seq
      F.named = F.named or {}
      if F.named[ev.rid] ~= ev.key_name then  -- once per key and script call
        redis.call('HSET', F.keys, ev.rid, ev.rk)
        redis.call('HSET', F.names, ev.rid, ev.key_name)
        F.named[ev.rid] = ev.key_name
      end
      if line then
        line = line .. ' ' .. seq
      else  -- a new line's head (a new seq is in no zset yet)
        line = tostring(seq)
        if ev.not_before > now then
          o.wait[#o.wait + 1] = ev.not_before
          o.wait[#o.wait + 1] = seq
        else
          o.ready[#o.ready + 1] = ev.prio * 1e13 + seq
          o.ready[#o.ready + 1] = seq
        end
      end
      o.line[ev.dk], o.lines[ev.dk] = line, line
      placed = placed + 1
    end
  end
  ob_flush(F, P)
  return placed
end

-- One event (a decoded table; its body in ev.body, or as `lit`): see ob_enqueue_many.
local function ob_enqueue(F, O, ev, now, lit)
  return ob_enqueue_many(F, {{O = O, ev = ev, lit = lit}}, now)
end

-- The events of a commit or enqueue request: each [i_lines, i_ready, i_wait, i_age, rid,
-- rk, dk, action, severity, prio, key_name, enqueued_at, not_before, i_small, i_body],
-- the i_ naming KEYS and ARGV.
local function ob_events(list, E)
  for _, x in ipairs(list) do
    E[#E + 1] = {O = {lines = KEYS[x[1]], ready = KEYS[x[2]], wait = KEYS[x[3]], age = KEYS[x[4]]},
                 ev = {rid = x[5], rk = x[6], dk = x[7], action = x[8], severity = x[9], prio = x[10],
                       key_name = x[11], enqueued_at = x[12], not_before = x[13]},
                 small = ARGV[x[14]], lit = ARGV[x[15]]}
  end
  return E
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
    redis.call('HDEL', F.keys, rid)  -- (its name stays: the stats show its budget used)
  end
  return raw
end

-- The budget stamp now holds the answer's time (never earlier than it was).
local function settle(bud, stamp, now)
  if stamp and stamp ~= 0 then redis.call('ZADD', bud, 'XX', 'GT', now, stamp) end
end
