-- Replace every recovery code of the active factor at once.
-- KEYS: active, recovery
-- ARGV: hashing key id, digest, ...
-- Returns the active totp_id, or nil if the user has no active factor.
local totp_id = redis.call('HGET', KEYS[1], 'id')
if not totp_id then return false end
redis.call('DEL', KEYS[2])
redis.call('SADD', KEYS[2], unpack(ARGV, 2))
redis.call('HSET', KEYS[1], 'rk', ARGV[1])
return totp_id
