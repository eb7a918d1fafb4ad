-- KEYS[1] = prefix; ARGV[1] = rid, ARGV[2] = dedup_key, ARGV[3] = seq, ARGV[4] = now,
-- ARGV[5] = error. Atomically move the event to the dead letters; its line goes on.
local raw = ob_pop(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]))
if raw then
  local item = cjson.decode(raw)
  item.last_error, item.attempts, item.lease = ARGV[5], item.attempts + 1, 0
  redis.call('HSET', P .. ':ob:dead', item.seq, cjson.encode(item))
end
return 1
