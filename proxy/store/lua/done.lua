-- done: drop a delivered event (its line's next becomes the head) and settle its budget
-- stamp at the answer's time.
-- KEYS: 1 ob:items, 2 ob:seq, 3 ob:keys, 4 ob:names, 5 ob:lines:<rid>, 6 ob:ready:<rid>,
--   7 ob:wait:<rid>, 8 ob:age:<rid>, 9 bud:<rid>.
-- ARGV: 1 rid, 2 dedup_key, 3 seq, 4 stamp, 5 now.
local F = {items = KEYS[1], seq = KEYS[2], keys = KEYS[3], names = KEYS[4]}
local O = {lines = KEYS[5], ready = KEYS[6], wait = KEYS[7], age = KEYS[8]}
local now = tonumber(ARGV[5])
ob_pop(F, O, ARGV[1], ARGV[2], ARGV[3], now)
settle(KEYS[9], ARGV[4], now)
return 1
