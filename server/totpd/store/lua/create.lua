-- Save a pending enrollment with its TTL, unless the idempotency key names one already.
-- KEYS: pending, pending index, [idempotency]
-- ARGV: totp_id, now_ms, expire_ms, field, value, ...
-- Returns the totp_id already saved under the idempotency key, or nil once saved.
local totp_id, now, expire = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl = expire - now
if KEYS[3] then
  local existing = redis.call('GET', KEYS[3])
  if existing then return existing end
  redis.call('SET', KEYS[3], totp_id, 'PX', ttl)
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ttl)
-- The index only lists; it lives as long as its longest-lived entry and drops the expired.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], expire, totp_id)
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return false
