-- claim_due: take up to `limit` groups due at `now`, urgent lane first, pushing their due
-- time to now + lease so that no other replica flushes them meanwhile (a replica that
-- dies mid-flush loses them for one lease). The claim ends before a group whose alerts
-- (`sizes`) would take the claim's past `alerts`, the first group always taken
-- (semantics.claim_takes). Returns their keys; the caller loads them (a key whose group
-- expired by its TTL is dropped by the caller with ZREM).
-- KEYS: 1 due:u, 2 due:n, 3 sizes.  ARGV: 1 now, 2 lease (s), 3 limit, 4 alerts.
local now, lease, limit, bound = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out, held = {}, 0
for _, zset in ipairs({KEYS[1], KEYS[2]}) do
  if #out >= limit then break end
  local ks = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, limit - #out)
  if #ks > 0 then
    local sizes = redis.call('HMGET', KEYS[3], unpack(ks))
    local args = {}
    for i, k in ipairs(ks) do
      local n = tonumber(sizes[i]) or 0
      if #out > 0 and held + n > bound then
        limit = #out  -- the claim ends here, in both lanes
        break
      end
      held = held + n
      args[#args + 1] = now + lease
      args[#args + 1] = k
      out[#out + 1] = k
    end
    if #args > 0 then redis.call('ZADD', zset, unpack(args)) end
  end
end
return out
