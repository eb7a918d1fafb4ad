-- claim_jobs: up to `limit` jobs due by `now` (semantics.ready), oldest due first (ties in
-- id order, as SQLite's index and the memory store's heap), each leased until `lease_end`.
-- KEYS: 1 jobs hash, 2 jobs:due.  ARGV: 1 now, 2 lease_end, 3 limit.
-- Returns id, record, id, record, ...
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[2], ARGV[2], id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[1], id)
end
return out
