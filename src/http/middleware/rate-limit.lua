-- Counts one request against a key's limit: a token bucket of LIMIT tokens refilled at
-- LIMIT per PERIOD, kept as GCRA (one number, the bucket's "theoretical arrival time":
-- when it would be full again). One key, one GET and one SET: no lock, no log of requests.
--
-- KEYS[1]  the bucket of one API key (keys.rateLimit: PREFIX:ratelimit:{keyId})
-- ARGV[1]  LIMIT: requests per period, also the burst (a full bucket)
-- ARGV[2]  PERIOD in milliseconds (60000 for a per-minute limit)
-- ARGV[3]  now in milliseconds, or '' for Redis's own clock (TIME): every API node then
--          shares one clock, so their clock skew cannot bend the limit; tests pass it
-- ARGV[4]  cost (1: a batch counts as one request)
-- ARGV[5]  tokens wanted, at least cost (absent: cost): an API node leases what it expects
--          to spend soon in one call; it gets as many as the bucket holds, and nothing
--          unless it holds cost
--
-- Returns {allowed (1|0), remaining, retryAfterMs, resetMs, taken}:
--   remaining     whole requests still allowed right now
--   retryAfterMs  when allowed 0, how long until this request would be allowed
--   resetMs       how long until the bucket is full again (remaining = LIMIT)
--   taken         tokens taken (cost ≤ taken ≤ wanted), 0 when refused
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local cost = tonumber(ARGV[4]) or 1
local wanted = math.max(cost, tonumber(ARGV[5]) or cost)
-- Time one request "uses": the bucket refills one token per interval.
local interval = period / limit

local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then
  tat = now
end
local newTat = tat + cost * interval
-- The bucket holds at most LIMIT tokens: a request fits while newTat stays within PERIOD of now.
local allowAt = newTat - period

if now < allowAt then
  return {0, 0, math.ceil(allowAt - now), math.ceil(tat - now), 0}
end

-- Beyond cost, as many more of the wanted tokens as the bucket holds.
local taken = cost
if wanted > cost then
  local extra = math.min(wanted - cost, math.floor((now - allowAt) / interval + 1e-9))
  if extra > 0 then
    taken = cost + extra
    newTat = newTat + extra * interval
    allowAt = newTat - period
  end
end

-- %.17g round-trips a double, so fractions of an interval are never lost between calls.
redis.call('SET', KEYS[1], string.format('%.17g', newTat), 'PX', math.max(1, math.ceil(newTat - now)))
return {1, math.floor((now - allowAt) / interval + 1e-9), 0, math.ceil(newTat - now), taken}
