-- load: several groups in one call (the flusher loads a batch of 100 at a time; as a
-- pipeline that was 300 commands to pack and parse).
-- KEYS: for each group, its fields, alerts and statuses hashes (three keys each).
-- Returns, for each group, {fields, alerts, statuses} as flat HGETALL lists.
local out = {}
for i = 1, #KEYS, 3 do
  out[#out + 1] = {redis.call('HGETALL', KEYS[i]), redis.call('HGETALL', KEYS[i + 1]),
                   redis.call('HGETALL', KEYS[i + 2])}
end
return out
