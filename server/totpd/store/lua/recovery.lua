-- Shared by the scripts that touch recovery codes (prepended to each). An active hash
-- keeps each unused code as a field RECOVERY_PREFIX .. digest with an empty value, and
-- their number in 'rn' (keys.py): small fields keep the hash a ziplist/listpack, and
-- GetTotp reads the number with one HGET.
local RECOVERY_PREFIX = '#'  -- keys.RECOVERY_FIELD_PREFIX; no other field starts with it

-- Add one field per digest and set 'rn'. The hash must hold no code fields yet.
local function set_recovery_codes(active, digests)
  local fields = {}
  for _, digest in ipairs(digests) do
    fields[#fields + 1] = RECOVERY_PREFIX .. digest
    fields[#fields + 1] = ''
  end
  local added = 0
  if #fields > 0 then added = redis.call('HSET', active, unpack(fields)) end
  redis.call('HSET', active, 'rn', added)  -- HSET counts new fields: a repeat counts once
end

-- Remove every code field (and so every unused code).
local function clear_recovery_codes(active)
  local codes = {}
  for _, field in ipairs(redis.call('HKEYS', active)) do
    if string.sub(field, 1, 1) == RECOVERY_PREFIX then codes[#codes + 1] = field end
  end
  if #codes > 0 then redis.call('HDEL', active, unpack(codes)) end
  redis.call('HSET', active, 'rn', 0)
end

-- Consume the code with this digest: the number of codes left, or nil if it is not one.
local function take_recovery_code(active, digest)
  if redis.call('HDEL', active, RECOVERY_PREFIX .. digest) == 0 then return nil end
  return redis.call('HINCRBY', active, 'rn', -1)
end
