-- KEYS[1] = prefix; ARGV[1] = rid, ARGV[2] = dedup_key, ARGV[3] = seq, ARGV[4] = now.
-- Atomically remove a delivered event and make the next one of its line due.
ob_pop(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]))
return 1
