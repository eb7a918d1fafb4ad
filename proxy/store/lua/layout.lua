-- layout: the number of partitions a proxy's state is laid out in (redis_parts.py), read
-- and taken in one step, so that two proxies set to different numbers never both pass.
-- KEYS: 1 layout (the number, kept for good), 2 live (the number of the proxies running on
--   this prefix: a TTL each of them refreshes while it runs)
-- ARGV: 1 this proxy's number, 2 live's TTL (s), 3 "take" (record this number) or "read"
--   (write nothing), 4 a number the caller found holding no data ('' if none): a layout of
--   that number may be replaced
-- Returns {'ok'}; {'busy', n}: a proxy set to n runs on this prefix (n differs); or
-- {'other', n}: the data is laid out in n (no key: 1, as before layouts were kept), and the
-- caller looks whether it holds anything.
local n, ttl, take, empty = ARGV[1], tonumber(ARGV[2]), ARGV[3] == 'take', ARGV[4]
local cur = redis.call('GET', KEYS[1]) or '1'
local live = redis.call('GET', KEYS[2])
if live and live ~= n then return {'busy', live} end
if cur ~= n and cur ~= empty then return {'other', cur} end
if take then
  redis.call('SET', KEYS[1], n)
  redis.call('SET', KEYS[2], n, 'EX', ttl)
end
return {'ok'}
