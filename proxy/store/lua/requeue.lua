-- KEYS[1] = prefix; ARGV[1] = now, ARGV[2] = JSON array of seqs, or "all".
-- Atomically move dead letters back into the outbox; returns how many.
local now, n = tonumber(ARGV[1]), 0
local seqs
if ARGV[2] == 'all' then seqs = redis.call('HKEYS', P .. ':ob:dead') else seqs = cjson.decode(ARGV[2]) end
for _, seq in ipairs(seqs) do
  local raw = redis.call('HGET', P .. ':ob:dead', seq)
  if raw then
    redis.call('HDEL', P .. ':ob:dead', seq)
    local ev = cjson.decode(raw)
    ev.attempts, ev.not_before, ev.last_error = 0, 0, ''
    ob_enqueue(ev, now)
    n = n + 1
  end
end
return n
