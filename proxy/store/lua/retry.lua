-- retry: give a leased event back, due again at not_before (it stays first in its line);
-- settle its budget stamp at the answer's time.
-- KEYS: 1 ob:items, 2 ob:ready:<rid>, 3 ob:wait:<rid>, 4 bud:<rid>.
-- ARGV: 1 seq, 2 stamp, 3 now, 4 not_before, 5 error, 6 1 to count an attempt.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
settle(KEYS[4], ARGV[2], tonumber(ARGV[3]))
if not raw then return 0 end
local item = cjson.decode(raw)
item.not_before, item.last_error, item.lease = tonumber(ARGV[4]), ARGV[5], 0
item.attempts = item.attempts + tonumber(ARGV[6])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(item))
ob_schedule({items = KEYS[1]}, {ready = KEYS[2], wait = KEYS[3]}, ARGV[1], tonumber(ARGV[3]))
return 1
