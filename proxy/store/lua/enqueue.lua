-- enqueue: append events to their lines (lib_outbox.lua: ob_enqueue_many), atomically.
-- KEYS: 1 ob:items, 2 ob:seq, 3 ob:keys, 4 ob:names, then by index.
-- ARGV[1]: JSON {now, e: [event...] (see ob_events)}; the other ARGV: the events' items
-- and bodies, named by index.
local R = cjson.decode(ARGV[1])
local F = {items = KEYS[1], seq = KEYS[2], keys = KEYS[3], names = KEYS[4]}
ob_enqueue_many(F, ob_events(R.e, {}), R.now)
return 1
