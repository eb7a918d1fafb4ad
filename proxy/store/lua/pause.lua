-- pause: nothing of this key is taken before `until`; never shortens a pause.
-- KEYS: 1 pause:<rid>.  ARGV: 1 until, 2 TTL (s).
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
