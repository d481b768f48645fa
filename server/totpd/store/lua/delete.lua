-- Delete the active factor (with its codes and lockout) or one pending enrollment.
-- KEYS: active, lockout, pending index, [pending]
-- ARGV: totp_id ('' means the active factor)
-- Returns the id of what was deleted, or nil if there was nothing to delete.
local active, lockout, index, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local totp_id = ARGV[1]
local active_id = redis.call('HGET', active, 'id')
if active_id and (totp_id == '' or totp_id == active_id) then
  redis.call('DEL', active, lockout)  -- the recovery codes are fields of the active hash
  return active_id
end
if pending then
  redis.call('ZREM', index, totp_id)
  if redis.call('DEL', pending) == 1 then return totp_id end
end
return false
