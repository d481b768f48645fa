-- Check a TOTP code against the active factor: replay protection and lockout in one step.
-- (lockout.lua is prepended.)
-- KEYS: active, lockout
-- ARGV: totp_id, matched ('1' or '0'), matched step, now_ms, threshold, base_ms, max_ms, hard
-- Returns {'accepted'} | {'rejected'} | {'locked', ms or -1} | {'not_found'} | {'stale'}
local active, lockout = KEYS[1], KEYS[2]
local now = tonumber(ARGV[4])
local current = redis.call('HMGET', active, 'id', 'step')
if not current[1] then return {'not_found'} end
if current[1] ~= ARGV[1] then return {'stale'} end

local locked = lock_remaining(lockout, now)
if locked then return {'locked', locked} end

-- A step at or before the last accepted one is a replay, even of a code never seen.
if ARGV[2] == '1' and tonumber(ARGV[3]) > tonumber(current[2]) then
  redis.call('HSET', active, 'step', ARGV[3], 'used', ARGV[4])
  redis.call('DEL', lockout)
  return {'accepted'}
end
record_failure(lockout, now, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
               tonumber(ARGV[8]))
return {'rejected'}
