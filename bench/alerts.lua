-- wrk script: POST alerts, each request new ones.
-- env BATCH (alerts per request, default 64), OPEN (distinct fingerprints in rotation,
-- i.e. open alerts, default 100000), FORMAT (webhook | am_api | events_v2).
local counter = 0
local batch = tonumber(os.getenv("BATCH") or "64")
local open = tonumber(os.getenv("OPEN") or "100000")
local format = os.getenv("FORMAT") or "webhook"
local key = "0123456789abcdef0123456789abcdef"

local function alert(n)
  local f = n % open
  return string.format('{"status":"firing","labels":{"alertname":"Bench%d","service":"svc%d",'
    .. '"instance":"i%d","severity":"warning"},"annotations":{"summary":"bench alert %d"},'
    .. '"startsAt":"2026-11-22T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",'
    .. '"generatorURL":"http://prometheus:9090/graph","fingerprint":"%x"}', f % 50, f % 20, f, f, f)
end

request = function()
  counter = counter + 1
  local body
  if format == "events_v2" then
    local f = counter % open
    body = string.format('{"routing_key":"%s","event_action":"trigger","dedup_key":"bench-%d",'
      .. '"payload":{"summary":"bench alert %d","source":"host%d","severity":"warning"}}', key, f, f, f % 20)
  else
    local parts = {}
    for i = 1, batch do parts[i] = alert(counter * batch + i) end
    if format == "am_api" then
      body = "[" .. table.concat(parts, ",") .. "]"
    else
      body = '{"version":"4","status":"firing","receiver":"bench","groupKey":"{}","alerts":['
        .. table.concat(parts, ",") .. ']}'
    end
  end
  return wrk.format("POST", wrk.path, {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\":%d,\"duration_us\":%d,\"errors\":%d,\"non2xx\":%d,"
    .. "\"p50_us\":%d,\"p99_us\":%d}\n", summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
