-- Consume one recovery code of the active factor, or count a failure, and append the audit
-- events of that. (lockout.lua, recovery.lua and audit.lua are prepended.)
-- KEYS: active, lockout, [events]
-- ARGV: now_ms, threshold, base_ms, max_ms, hard, user_id, caller, events maxlen,
--       digest, ... (one per hashing key)
-- Returns {outcome, totp_id, n} like check_code.lua; for 'accepted', n is the number of
-- codes left. Given the events stream, appends the 'recovery_code.use' events (audit.lua).
local active, lockout = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local audit = audit_context(KEYS[3], ARGV[8], ARGV[6], ARGV[1], ARGV[7])

local function use()
  local totp_id = redis.call('HGET', active, 'id')
  if not totp_id then return {'not_found', '', 0} end

  local locked = lock_remaining(lockout, now)
  if locked then return {'locked', totp_id, locked} end

  for i = 9, #ARGV do
    local left = take_recovery_code(active, ARGV[i])
    if left then
      redis.call('DEL', lockout)
      return {'accepted', totp_id, left}
    end
  end
  local engaged = record_failure(lockout, now, tonumber(ARGV[2]), tonumber(ARGV[3]),
                                 tonumber(ARGV[4]), tonumber(ARGV[5]))
  return {'rejected', totp_id, engaged}
end

local reply = use()
append_check_events(audit, 'recovery_code.use', reply)  -- model.EventType.USE_RECOVERY_CODE
return reply
