-- enqueue: append events to their lines (lib_outbox.lua: ob_enqueue), atomically.
-- KEYS: 1 ob:items, 2 ob:seq, 3 ob:keys, 4 ob:names, then by index.
-- ARGV[1]: JSON {now, e: [[event, [i_lines, i_ready, i_wait, i_age], i_body]...]};
-- ARGV[i_body]: that event's body as a JSON string.
local R = cjson.decode(ARGV[1])
local F = {items = KEYS[1], seq = KEYS[2], keys = KEYS[3], names = KEYS[4]}
for _, e in ipairs(R.e) do
  local o = e[2]
  ob_enqueue(F, {lines = KEYS[o[1]], ready = KEYS[o[2]], wait = KEYS[o[3]], age = KEYS[o[4]]}, e[1], R.now,
             ARGV[e[3]])
end
return 1
