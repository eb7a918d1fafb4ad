-- KEYS[1] = prefix; ARGV[1] = now (s), ARGV[2] = JSON array of events.
-- Atomically append the events to their lines (lib_outbox.lua: ob_enqueue).
local now = tonumber(ARGV[1])
for _, ev in ipairs(cjson.decode(ARGV[2])) do ob_enqueue(ev, now) end
return 1
