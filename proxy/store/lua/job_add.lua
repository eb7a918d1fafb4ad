-- add_job: queue a job unless its id is known (queued, dead, or done and not yet forgotten).
-- KEYS: 1 jobs hash, 2 jobs:due, 3 jobs:done.  ARGV: 1 id, 2 record JSON, 3 now.
-- Returns 1 when queued.
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[3], 'LIMIT', 0, 100)
for _, id in ipairs(gone) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[3], id)
end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return 1
end
return 0
