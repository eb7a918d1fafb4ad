-- KEYS[1] = prefix; ARGV[1] = rid, ARGV[2] = rate (tokens/s), ARGV[3] = burst, ARGV[4] = now.
-- Atomically take one token of the routing key's bucket, shared by every replica.
-- Returns "0" when taken, else the seconds to wait (as a string).
local key = KEYS[1] .. ':tb:' .. ARGV[1]
local rate, burst, now = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens, ts = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', key, math.ceil(burst / rate) + 60)
return tostring(wait)
