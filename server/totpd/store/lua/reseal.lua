-- Key rotation: replace the sealed fields of one record, only if it is unchanged since it
-- was read: compare-and-set on the fields rotation read ('sec'; of a pending record also
-- 'rcb' and 'rk', which it may replace too). Every seal draws a fresh nonce, so a record
-- re-sealed, or replaced by another factor, since it was read has another 'sec' (and
-- 'rcb'). A record that expired, was activated, deleted or re-sealed meanwhile is left
-- alone; a later run picks up whatever replaced it. HSET keeps the key's TTL, so a pending
-- enrollment still expires when it would have.
-- KEYS: record (an active or a pending hash)
-- ARGV: n, field, value as read, ... (n pairs), field, new value, ... (the fields to set)
-- Returns 1 if replaced, 0 if the record changed or is gone.
local record, n = KEYS[1], tonumber(ARGV[1])
for i = 2, 2 * n, 2 do
  if redis.call('HGET', record, ARGV[i]) ~= ARGV[i + 1] then return 0 end
end
if #ARGV > 2 * n + 1 then redis.call('HSET', record, unpack(ARGV, 2 * n + 2)) end
return 1
