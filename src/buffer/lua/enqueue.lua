-- Appends events to one partition stream and remembers their ids, in one atomic step,
-- so an id is marked as seen only when its entry was written.
--
-- KEYS[1]     the partition stream
-- KEYS[2]     the current dedupe bucket (a set of 16-byte members, one per (service, id):
--             producer.ts dedupeMember), written to
-- KEYS[3..n]  older dedupe buckets of the window, only read
--             (with dedupe off, only KEYS[1] is given)
-- ARGV[1]     TTL in seconds of the current bucket
-- ARGV[2]     entry format version (field `v`)
-- ARGV[3..]   triples: dedupe member (16 bytes), event JSON (field `e`), traceparent (field `tp`)
--
-- Returns one element per event, in order: the new entry id, or 0 when the id was seen.
local dedupe = #KEYS >= 2
local out = {}
local n = 0
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  local seen = false
  if dedupe then
    for k = 2, #KEYS do
      if redis.call('SISMEMBER', KEYS[k], id) == 1 then
        seen = true
        break
      end
    end
  end
  n = n + 1
  if seen then
    out[n] = 0
  else
    out[n] = redis.call('XADD', KEYS[1], '*', 'v', ARGV[2], 'e', ARGV[i + 1], 'tp', ARGV[i + 2])
    if dedupe then
      redis.call('SADD', KEYS[2], id)
    end
  end
end
if dedupe then
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return out
