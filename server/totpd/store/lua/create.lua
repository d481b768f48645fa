-- Save a pending enrollment with its TTL, unless the idempotency key names one already;
-- and, given the events stream, append its 'totp.create' event (audit.lua is prepended).
-- KEYS: pending, pending index, [idempotency], [events]
-- ARGV: totp_id, now_ms, expire_ms, has idempotency key ('1' or '0'), user_id, caller,
--       events maxlen, field, value, ...
-- Returns the totp_id already saved under the idempotency key (nothing saved, no event),
-- or nil once saved.
local totp_id, now, expire = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local idempotency = ARGV[4] == '1' and KEYS[3] or nil
local audit = audit_context(KEYS[idempotency and 4 or 3], ARGV[7], ARGV[5], ARGV[2], ARGV[6])
local ttl = expire - now
if idempotency then
  local existing = redis.call('GET', idempotency)
  if existing then return existing end
  redis.call('SET', idempotency, totp_id, 'PX', ttl)
end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('PEXPIRE', KEYS[1], ttl)
-- The index only lists; it lives as long as its longest-lived entry and drops the expired.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], expire, totp_id)
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
append_event(audit, 'totp.create', totp_id, 'ok')  -- model.EventType.CREATE
return false
