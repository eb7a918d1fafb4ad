-- dead: move an event to the dead letters (its line goes on) and settle its budget stamp.
-- KEYS: 1 ob:items, 2 ob:seq, 3 ob:keys, 4 ob:names, 5 ob:lines:<rid>, 6 ob:ready:<rid>,
--   7 ob:wait:<rid>, 8 ob:age:<rid>, 9 bud:<rid>, 10 ob:dead.
-- ARGV: 1 rid, 2 dedup_key, 3 seq, 4 stamp, 5 now, 6 error.
local F = {items = KEYS[1], seq = KEYS[2], keys = KEYS[3], names = KEYS[4]}
local O = {lines = KEYS[5], ready = KEYS[6], wait = KEYS[7], age = KEYS[8]}
local now = tonumber(ARGV[5])
local raw = ob_pop(F, O, ARGV[1], ARGV[2], ARGV[3], now)
settle(KEYS[9], ARGV[4], now)
if raw then
  local item = cjson.decode(raw)
  item.last_error, item.attempts, item.lease = ARGV[6], item.attempts + 1, 0
  redis.call('HSET', KEYS[10], item.seq, cjson.encode(item))
end
return 1
