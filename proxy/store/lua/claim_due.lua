-- claim_due: take up to `limit` groups due at `now`, urgent lane first, pushing their due
-- time to now + lease so that no other replica flushes them meanwhile (a replica that
-- dies mid-flush loses them for one lease). Returns their keys; the caller loads them
-- (a key whose group expired by its TTL is dropped by the caller with ZREM).
-- KEYS: 1 due:u, 2 due:n.  ARGV: 1 now, 2 lease (s), 3 limit.
local now, lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for _, zset in ipairs({KEYS[1], KEYS[2]}) do
  if #out >= limit then break end
  local ks = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, limit - #out)
  if #ks > 0 then
    local args = {}
    for _, k in ipairs(ks) do
      args[#args + 1] = now + lease
      args[#args + 1] = k
      out[#out + 1] = k
    end
    redis.call('ZADD', zset, unpack(args))
  end
end
return out
