-- Consume one recovery code of the active factor, or count a failure. (lockout.lua and
-- recovery.lua are prepended.)
-- KEYS: active, lockout
-- ARGV: now_ms, threshold, base_ms, max_ms, hard, digest, ... (one per hashing key)
-- Returns {outcome, totp_id, n} like check_code.lua; for 'accepted', n is the number of
-- codes left.
local active, lockout = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local totp_id = redis.call('HGET', active, 'id')
if not totp_id then return {'not_found', '', 0} end

local locked = lock_remaining(lockout, now)
if locked then return {'locked', totp_id, locked} end

for i = 6, #ARGV do
  local left = take_recovery_code(active, ARGV[i])
  if left then
    redis.call('DEL', lockout)
    return {'accepted', totp_id, left}
  end
end
local engaged = record_failure(lockout, now, tonumber(ARGV[2]), tonumber(ARGV[3]),
                               tonumber(ARGV[4]), tonumber(ARGV[5]))
return {'rejected', totp_id, engaged}
