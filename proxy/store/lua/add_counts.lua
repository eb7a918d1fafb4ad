-- add_counts: add to one hour's counters; a new field past the cap goes to its metric's
-- "(other)" field, so the hash stays bounded whatever the label values.
-- KEYS: 1 count:<hour>, 2 count:<the hour that falls out of the kept ones (deleted)>.
-- ARGV: 1 JSON {field: amount}, 2 fields at most, 3 TTL (s, a backstop).
local counts, cap = cjson.decode(ARGV[1]), tonumber(ARGV[2])
local n = redis.call('HLEN', KEYS[1])
for field, v in pairs(counts) do
  if redis.call('HEXISTS', KEYS[1], field) == 0 then
    if n >= cap then
      field = string.match(field, '^([^|]*)') .. '|(other)'
    else
      n = n + 1
    end
  end
  redis.call('HINCRBYFLOAT', KEYS[1], field, v)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2])
return 1
