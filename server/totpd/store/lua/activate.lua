-- Activate a pending enrollment (a code matched) or count a failed attempt on it.
-- KEYS: pending, pending index, active, recovery, lockout
-- ARGV: totp_id, matched ('1' or '0'), matched step, max attempts, now_ms
-- Returns {'activated', replaced totp_id or ''} | {'rejected'} | {'discarded'} | {'not_found'}
local pending, index, active, recovery, lockout = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local totp_id = ARGV[1]
if redis.call('EXISTS', pending) == 0 then return {'not_found'} end

if ARGV[2] == '1' then
  local f = redis.call('HMGET', pending, 'core', 'rk', 'rh')
  local replaced = redis.call('HGET', active, 'id') or ''
  -- The old factor, its codes and its lockout go in the same step as the new one arrives.
  redis.call('DEL', active, recovery, lockout, pending)
  redis.call('ZREM', index, totp_id)
  redis.call('HSET', active, 'id', totp_id, 'core', f[1], 'rk', f[2], 'at', ARGV[5],
             'step', ARGV[3])
  local digests = f[3]
  for i = 1, #digests, 32 do
    redis.call('SADD', recovery, string.sub(digests, i, i + 31))
  end
  return {'activated', replaced}
end

if redis.call('HINCRBY', pending, 'fails', 1) >= tonumber(ARGV[4]) then
  redis.call('DEL', pending)
  redis.call('ZREM', index, totp_id)
  return {'discarded'}
end
return {'rejected'}
