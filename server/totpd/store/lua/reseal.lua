-- Key rotation: replace the sealed fields of one record, only if it is unchanged since it
-- was read (compare-and-set on its 'core'). A record that expired, was activated, deleted
-- or re-sealed meanwhile is left alone; a later run picks up whatever replaced it.
-- HSET keeps the key's TTL, so a pending enrollment still expires when it would have.
-- KEYS: record (an active or a pending hash)
-- ARGV: core as read, new core, field, value, ... (other fields to set)
-- Returns 1 if replaced, 0 if the record changed or is gone.
if redis.call('HGET', KEYS[1], 'core') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'core', ARGV[2], unpack(ARGV, 3))
return 1
