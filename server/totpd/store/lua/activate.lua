-- Activate a pending enrollment (a code matched) or count a failed attempt on it, and
-- append the audit event of that. (recovery.lua and audit.lua are prepended.)
-- KEYS: pending, pending index, active, lockout, [events]
-- ARGV: totp_id, matched ('1' or '0'), matched step, max attempts, now_ms,
--       user_id, caller, events maxlen
-- Returns {'activated', replaced totp_id or ''} | {'rejected'} | {'discarded'} | {'not_found'}
-- and, given the events stream, appends a 'totp.activate' event with that outcome.
local pending, index, active, lockout = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local totp_id = ARGV[1]
local audit = audit_context(KEYS[5], ARGV[8], ARGV[6], ARGV[5], ARGV[7])
-- The factor's fields (keys.py): the same in both hashes, copied over as they are.
local FACTOR = {'uid', 'p', 'iss', 'acc', 'kid', 'sec', 'ct', 'rk'}

local function activate()
  if redis.call('EXISTS', pending) == 0 then return {'not_found'} end

  if ARGV[2] == '1' then
    local values = redis.call('HMGET', pending, unpack(FACTOR))
    local packed = redis.call('HGET', pending, 'rh')  -- 32-byte digests, concatenated
    local replaced = redis.call('HGET', active, 'id') or ''
    -- The old factor, its codes and its lockout go in the same step as the new one arrives.
    redis.call('DEL', active, lockout, pending)
    redis.call('ZREM', index, totp_id)
    local fields = {'id', totp_id, 'at', ARGV[5], 'step', ARGV[3]}
    for i, name in ipairs(FACTOR) do
      fields[#fields + 1] = name
      fields[#fields + 1] = values[i]
    end
    redis.call('HSET', active, unpack(fields))
    local digests = {}
    for i = 1, #packed, 32 do digests[#digests + 1] = string.sub(packed, i, i + 31) end
    set_recovery_codes(active, digests)
    return {'activated', replaced}
  end

  if redis.call('HINCRBY', pending, 'fails', 1) >= tonumber(ARGV[4]) then
    redis.call('DEL', pending)
    redis.call('ZREM', index, totp_id)
    return {'discarded'}
  end
  return {'rejected'}
end

local reply = activate()
append_event(audit, 'totp.activate', totp_id, reply[1])  -- model.EventType.ACTIVATE
return reply
