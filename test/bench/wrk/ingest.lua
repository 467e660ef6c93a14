-- wrk script: POSTs fresh events to Tributary or a peer.
-- BENCH_BATCH=N sends {"events":[...N events...]} to BENCH_PATH; otherwise one event per request.
-- BENCH_FORMAT=segment sends Segment batches instead: {"batch":[...N track calls...],"sentAt"} with
-- the fields @segment/analytics-node sends (messageId node-next-<ms>-<uuid>, context.library,
-- _metadata, timestamp), the native event's metadata as properties; BENCH_AUTH is then the
-- Authorization header (Basic, the write key as user name). BENCH_FORMAT=native-rich sends native
-- batches whose events carry what those calls carry (properties, context, _metadata,
-- integrations, messageId in metadata): the baseline of the translation alone.
-- BENCH_FORMAT=plans sends native batches of `order.completed` events of service BENCH_SERVICE
-- whose metadata has the 20 properties of the tracking plan in test/bench/plans.ts, all valid.
-- Each event has a fresh random UUID (so none is answered as a duplicate), a current
-- timestamp and a userId among 10,000, so events spread over every partition.
local batch = tonumber(os.getenv("BENCH_BATCH") or "0")
local path = os.getenv("BENCH_PATH") or "/v1/events"
local key = os.getenv("BENCH_KEY") or ""
local format = os.getenv("BENCH_FORMAT") or "native"
local auth = os.getenv("BENCH_AUTH") or ""
local service = os.getenv("BENCH_SERVICE") or ""
local hex = "0123456789abcdef"
local services = { "checkout", "billing", "search", "accounts", "catalog" }
local types = { "order.placed", "page.view", "cart.updated", "payment.captured", "user.signup" }
local n = 0

-- Each thread of each run seeds from /dev/urandom: a seed from the clock would give two
-- threads, or two runs started in the same second, the same "random" ids (answered duplicate).
function init(args)
  local f = io.open("/dev/urandom", "rb")
  local b = f:read(4)
  f:close()
  math.randomseed(b:byte(1) * 16777216 + b:byte(2) * 65536 + b:byte(3) * 256 + b:byte(4))
  math.random(); math.random()
end

local function uuid()
  local t = {}
  for i = 1, 32 do
    local r = math.random(1, 16)
    t[i] = hex:sub(r, r)
  end
  t[13] = "4"
  local s = table.concat(t)
  return s:sub(1, 8) .. "-" .. s:sub(9, 12) .. "-" .. s:sub(13, 16) .. "-" .. s:sub(17, 20) .. "-" .. s:sub(21, 32)
end

local function event()
  n = n + 1
  return '{"id":"' .. uuid() .. '","service":"' .. services[n % 5 + 1] .. '","type":"' .. types[math.floor(n / 4) % 5 + 1]
    .. '","userId":"user-' .. math.random(0, 9999) .. '","timestamp":"' .. os.date("!%Y-%m-%dT%H:%M:%SZ")
    .. '","metadata":{"plan":"pro","country":"DE","path":"/checkout/confirm","sessionId":"s-' .. n
    .. '","userAgent":"Mozilla/5.0 Firefox/128.0","durationMs":' .. (n % 1500) .. ',"amountCents":'
    .. (n * 37 % 100000) .. ',"currency":"EUR"}}'
end

-- The same event as a Segment track call, as analytics-node sends it (one service: the write key's).
local function segmentCall()
  n = n + 1
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  return '{"type":"track","event":"' .. types[math.floor(n / 4) % 5 + 1] .. '","userId":"user-' .. math.random(0, 9999)
    .. '","messageId":"node-next-' .. os.time() .. '000-' .. uuid() .. '","timestamp":"' .. now
    .. '","properties":{"plan":"pro","country":"DE","path":"/checkout/confirm","sessionId":"s-' .. n
    .. '","userAgent":"Mozilla/5.0 Firefox/128.0","durationMs":' .. (n % 1500) .. ',"amountCents":'
    .. (n * 37 % 100000) .. ',"currency":"EUR"},"context":{"library":{"name":"@segment/analytics-node","version":"3.1.0"}}'
    .. ',"_metadata":{"jsRuntime":"node"},"integrations":{}}'
end

-- A native event with the content of segmentCall(): what the Segment route stores, sent natively.
local function richEvent()
  n = n + 1
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  return '{"id":"' .. uuid() .. '","service":"web-shop","type":"' .. types[math.floor(n / 4) % 5 + 1]
    .. '","userId":"user-' .. math.random(0, 9999) .. '","timestamp":"' .. now
    .. '","metadata":{"messageId":"node-next-' .. os.time() .. '000-' .. uuid() .. '","timestamp":"' .. now
    .. '","properties":{"plan":"pro","country":"DE","path":"/checkout/confirm","sessionId":"s-' .. n
    .. '","userAgent":"Mozilla/5.0 Firefox/128.0","durationMs":' .. (n % 1500) .. ',"amountCents":'
    .. (n * 37 % 100000) .. ',"currency":"EUR"},"context":{"library":{"name":"@segment/analytics-node","version":"3.1.0"}}'
    .. ',"_metadata":{"jsRuntime":"node"},"integrations":{}}}'
end

-- An order with the 20 properties of the bench's tracking plan (test/bench/plans.ts), valid.
local function plannedEvent()
  n = n + 1
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  return '{"id":"' .. uuid() .. '","service":"' .. service .. '","type":"order.completed","userId":"user-'
    .. math.random(0, 9999) .. '","timestamp":"' .. now .. '","metadata":{"orderId":"o-' .. n
    .. '","checkoutId":"c-' .. n .. '","total":' .. (n % 1000) .. '.5,"subtotal":' .. (n % 900)
    .. ',"revenue":' .. (n % 800) .. ',"shipping":4.99,"tax":1.5,"discount":0,"coupon":"WINTER","currency":"EUR"'
    .. ',"affiliation":"web","paymentMethod":"card","country":"DE","itemCount":' .. (n % 9 + 1)
    .. ',"firstOrder":false,"email":"user-' .. (n % 9999) .. '@example.com","sessionId":"s-' .. n
    .. '","storeId":"st-1","path":"/checkout/confirm","placedAt":"' .. now .. '"}}'
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if key ~= "" then wrk.headers["x-api-key"] = key end
if auth ~= "" then wrk.headers["Authorization"] = auth end

request = function()
  if format == "segment" then
    local parts = {}
    for i = 1, math.max(batch, 1) do parts[i] = segmentCall() end
    return wrk.format(nil, path, nil,
      '{"batch":[' .. table.concat(parts, ",") .. '],"sentAt":"' .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. '"}')
  end
  if batch > 0 then
    local parts = {}
    local make = format == "native-rich" and richEvent or (format == "plans" and plannedEvent or event)
    for i = 1, batch do parts[i] = make() end
    return wrk.format(nil, path, nil, '{"events":[' .. table.concat(parts, ",") .. ']}')
  end
  return wrk.format(nil, path, nil, event())
end

-- Failed requests come from wrk's own counters (errors.status counts every status above 399):
-- no response() hook, which would make wrk call into Lua for every response and slow it down.
-- A 202 "duplicate" looks like success here; the bench's check that the streams hold as many
-- entries as events were answered 202 would show it.
done = function(summary, latency, requests)
  io.write(string.format('BENCH_JSON {"requests":%d,"durationUs":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50us":%d,"p99us":%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
