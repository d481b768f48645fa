-- Shared by the code-check scripts (prepended to each): the per-user lockout.
-- The lockout hash holds 'fails' (consecutive failures), 'until' (ms) and 'hard' ('1').

-- Milliseconds until the lock lifts, -1 if it never lifts by itself, nil if not locked.
local function lock_remaining(lockout, now)
  local state = redis.call('HMGET', lockout, 'until', 'hard')
  if state[2] then return -1 end
  if state[1] and tonumber(state[1]) > now then return tonumber(state[1]) - now end
  return nil
end

-- Count one failure: from `threshold` failures on, lock for base * 2^(extra failures),
-- at most `max`; at `hard` failures, lock for good. Waiting never resets the count.
-- Returns the lock this failure engaged: its length in ms, -1 for good, 0 for none.
local function record_failure(lockout, now, threshold, base, max, hard)
  local fails = redis.call('HINCRBY', lockout, 'fails', 1)
  if fails >= hard then
    redis.call('HSET', lockout, 'hard', '1')
    return -1
  elseif fails >= threshold then
    local duration = math.min(base * 2 ^ (fails - threshold), max)
    redis.call('HSET', lockout, 'until', string.format('%.0f', now + duration))
    return duration
  end
  return 0
end
