-- KEYS[1] = prefix; ARGV[1] = rid, ARGV[2] = dedup_key, ARGV[3] = seq, ARGV[4] = now,
-- ARGV[5] = not_before, ARGV[6] = error, ARGV[7] = 1 to count an attempt.
-- Atomically give a leased event back, due again at not_before.
local raw = redis.call('HGET', ITEMS, ARGV[3])
if not raw then return 0 end
local item = cjson.decode(raw)
item.not_before, item.last_error, item.lease = tonumber(ARGV[5]), ARGV[6], 0
item.attempts = item.attempts + tonumber(ARGV[7])
redis.call('HSET', ITEMS, ARGV[3], cjson.encode(item))
ob_schedule(ARGV[1], ARGV[2], tonumber(ARGV[4]))
return 1
