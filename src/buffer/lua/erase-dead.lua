-- Deletes dead letters of a subject being erased and adds how many were deleted to the
-- erasure request's counts, in one atomic step: a job killed midway neither loses nor
-- double-counts a deletion, and an entry a replay (replay-dead.lua) moved meanwhile is
-- neither deleted nor counted.
--
-- On Redis Cluster the two keys are in different hash slots, so this script cannot run
-- there (dead-letter.ts deletes, then counts).
--
-- KEYS[1]    the dead-letter stream
-- KEYS[2]    the request's drop counts (keys.dsarDropped), a hash
-- ARGV[1]    the hash field to add to (`deadLetter`)
-- ARGV[2]    the hash's time to live, in seconds
-- ARGV[3..]  dead-letter entry ids
--
-- Returns the number of entries deleted (ids no longer in the stream are not counted).
local deleted = redis.call('XDEL', KEYS[1], unpack(ARGV, 3))
if deleted > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], deleted)
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return deleted
