-- Moves dead letters back to the partition streams they came from, in one atomic step:
-- each given dead-letter id that is still there is appended (as a new entry: fields v, e,
-- tp) to its partition stream and deleted from the dead-letter stream. No entry is ever
-- in both, and two replays running at once cannot both re-add one (the second finds it
-- gone and skips it).
--
-- On Redis Cluster the dead-letter stream and the partition streams are in different
-- hash slots, so this script cannot run there (dead-letter.ts replays entry by entry).
--
-- KEYS[1]     the dead-letter stream
-- KEYS[2..n]  the partition streams the entries go back to
-- ARGV[1]     entry format version for an entry without a `v` field
-- ARGV[2..]   pairs: dead-letter entry id, index in KEYS (2..n) of its partition stream
--
-- Returns the number of entries moved (ids no longer in the dead-letter stream are skipped).
local moved = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local found = redis.call('XRANGE', KEYS[1], id, id)
  local entry = found[1]
  if entry then
    local fields = entry[2]
    local v, e, tp = ARGV[1], '', ''
    for k = 1, #fields, 2 do
      local name = fields[k]
      if name == 'v' then
        v = fields[k + 1]
      elseif name == 'e' then
        e = fields[k + 1]
      elseif name == 'tp' then
        tp = fields[k + 1]
      end
    end
    redis.call('XADD', KEYS[tonumber(ARGV[i + 1])], '*', 'v', v, 'e', e, 'tp', tp)
    redis.call('XDEL', KEYS[1], id)
    moved = moved + 1
  end
end
return moved
