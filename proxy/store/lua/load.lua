-- load: several groups in one call (the flusher loads a batch of 100 at a time; as a
-- pipeline that was 300 commands to pack and parse).
-- KEYS: for each group, its fields, alerts and statuses hashes (three keys each).
-- ARGV: the names of the fields wanted (redis.py: _FIELDS).
-- Returns, for each group, {fields (in ARGV's order), alerts, statuses} (the last two as
-- flat HGETALL lists), or {} for a group that is gone.
local out = {}
for i = 1, #KEYS, 3 do
  local f = redis.call('HMGET', KEYS[i], unpack(ARGV))
  if f[1] then
    out[#out + 1] = {f, redis.call('HGETALL', KEYS[i + 1]), redis.call('HGETALL', KEYS[i + 2])}
  else
    out[#out + 1] = {}
  end
end
return out
