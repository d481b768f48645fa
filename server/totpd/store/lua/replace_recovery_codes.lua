-- Replace every recovery code of the active factor at once. (recovery.lua is prepended.)
-- KEYS: active
-- ARGV: hashing key id, digest, ...
-- Returns the active totp_id, or nil if the user has no active factor.
local active = KEYS[1]
local totp_id = redis.call('HGET', active, 'id')
if not totp_id then return false end
clear_recovery_codes(active)
set_recovery_codes(active, {unpack(ARGV, 2)})
redis.call('HSET', active, 'rk', ARGV[1])
return totp_id
