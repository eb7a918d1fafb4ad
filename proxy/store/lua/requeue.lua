-- requeue: move dead letters back into the outbox; returns how many.
-- KEYS: 1 ob:items, 2 ob:seq, 3 ob:keys, 4 ob:names, 5 ob:dead, then by index.
-- ARGV[1]: JSON {now, e: [[seq, [i_lines, i_ready, i_wait, i_age]]...]}
local R = cjson.decode(ARGV[1])
local F = {items = KEYS[1], seq = KEYS[2], keys = KEYS[3], names = KEYS[4]}
local n = 0
for _, e in ipairs(R.e) do
  local raw = redis.call('HGET', KEYS[5], e[1])
  if raw then
    redis.call('HDEL', KEYS[5], e[1])
    local ev = cjson.decode(raw)
    ev.attempts, ev.not_before, ev.last_error = 0, 0, ''
    local o = e[2]
    ob_enqueue(F, {lines = KEYS[o[1]], ready = KEYS[o[2]], wait = KEYS[o[3]], age = KEYS[o[4]]}, ev, R.now)
    n = n + 1
  end
end
return n
