-- heartbeat: a dead man's switch's next state, and whether this caller sends (Lua's copy
-- of store/semantics.py heartbeat, held to it by tests/contract/test_differential.py).
-- `seen`: one arrived (1: send its resolve, it had paged); `check`: none for `limit` s
-- (1: send its trigger, once); a heartbeat never seen is counted from its first check.
-- KEYS: 1 the beats hash (name -> "last paged").  ARGV: 1 name, 2 kind, 3 now, 4 limit.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local now, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local function put(last, paged)
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%.17g %d', last, paged))
end
if ARGV[2] == 'seen' then
  put(now, 0)
  if raw and string.sub(raw, -1) == '1' then return 1 end
  return 0
end
if not raw then
  put(now, 0)
  return 0
end
local last, paged = string.match(raw, '^(%S+) (%d)$')
last = tonumber(last)
if paged == '0' and last + limit <= now then
  put(last, 1)
  return 1
end
return 0
