-- Acknowledges entries of one partition stream and deletes them, atomically, so the
-- stream length is the number of unpersisted entries.
--
-- KEYS[1]    the partition stream
-- ARGV[1]    the consumer group
-- ARGV[2..]  entry ids
--
-- Returns the number of entries acknowledged.
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return acked
