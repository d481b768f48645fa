-- Check a TOTP code against the active factor: replay protection, lockout and the audit
-- events in one step. (lockout.lua and audit.lua are prepended.)
-- KEYS: active, lockout, [events]
-- ARGV: totp_id, matched ('1' or '0'), matched step, now_ms, threshold, base_ms, max_ms, hard,
--       user_id, caller, events maxlen
-- Returns {outcome, totp_id, n}:
--   {'accepted', id, 0} | {'rejected', id, lock engaged: ms, -1 or 0}
--   | {'locked', id, ms left or -1} | {'not_found', '', 0} | {'stale', id, 0}
-- and, given the events stream, appends the check's 'totp.verify' events (audit.lua).
local active, lockout = KEYS[1], KEYS[2]
local now = tonumber(ARGV[4])
local audit = audit_context(KEYS[3], ARGV[11], ARGV[9], ARGV[4], ARGV[10])

local function check()
  local current = redis.call('HMGET', active, 'id', 'step')
  local totp_id = current[1]
  if not totp_id then return {'not_found', '', 0} end
  if totp_id ~= ARGV[1] then return {'stale', totp_id, 0} end

  local locked = lock_remaining(lockout, now)
  if locked then return {'locked', totp_id, locked} end

  -- A step at or before the last accepted one is a replay, even of a code never seen.
  if ARGV[2] == '1' and tonumber(ARGV[3]) > tonumber(current[2]) then
    redis.call('HSET', active, 'step', ARGV[3], 'used', ARGV[4])
    redis.call('DEL', lockout)
    return {'accepted', totp_id, 0}
  end
  local engaged = record_failure(lockout, now, tonumber(ARGV[5]), tonumber(ARGV[6]),
                                 tonumber(ARGV[7]), tonumber(ARGV[8]))
  return {'rejected', totp_id, engaged}
end

local reply = check()
append_check_events(audit, 'totp.verify', reply)  -- model.EventType.VERIFY
return reply
