-- Appends events to one partition stream and remembers their ids, in one atomic step,
-- so an id is marked as seen only when its entry was written.
--
-- KEYS[1]     the partition stream
-- KEYS[2]     the current dedupe bucket (a set of members, one per (service, id):
--             producer.ts dedupeMember), written to
-- KEYS[3..n]  older dedupe buckets of the window, only read
--             (with dedupe off, only KEYS[1] is given)
-- ARGV[1]     TTL in seconds of the current bucket
-- ARGV[2]     entry format version (field `v`)
-- ARGV[3..]   triples: dedupe member, event JSON (field `e`), traceparent (field `tp`)
--
-- Returns one character per event, in order: '1' when its entry was written, '0' when its
-- id was seen (within the window, or earlier in this call). The window is looked up with
-- one SMISMEMBER per bucket for all the call's ids, and the new ids added with one SADD.
local dedupe = #KEYS >= 2
local n = (#ARGV - 2) / 3
local seen = {}
local members = {}
if dedupe then
  for k = 1, n do
    members[k] = ARGV[k * 3]
  end
  for b = 2, #KEYS do
    local found = redis.call('SMISMEMBER', KEYS[b], unpack(members))
    for k = 1, n do
      if found[k] == 1 then
        seen[k] = true
      end
    end
  end
end
local out = {}
local added = {}
local inCall = {}
for k = 1, n do
  local i = k * 3
  local id = ARGV[i]
  if seen[k] or inCall[id] then
    out[k] = '0'
  else
    redis.call('XADD', KEYS[1], '*', 'v', ARGV[2], 'e', ARGV[i + 1], 'tp', ARGV[i + 2])
    out[k] = '1'
    if dedupe then
      inCall[id] = true
      added[#added + 1] = id
    end
  end
end
if #added > 0 then
  redis.call('SADD', KEYS[2], unpack(added))
end
if dedupe then
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return table.concat(out)
