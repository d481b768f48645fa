-- Shared by the deciding scripts (prepended to each): the audit events of the decision,
-- appended to the events stream in the same script, so that a decision is never kept
-- without its events nor the other way round. The events are those of model.check_events
-- and model.activation_events, each with the fields, order and values of
-- RedisStore.append_event, capped the same way (XADD MAXLEN ~).
--
-- The store names the stream as the last of KEYS only where it shares the script's node
-- (one server, Sentinel's primary). On Redis Cluster the stream is in another slot than
-- the user's keys, which a script may not touch: there the store passes no stream, this
-- appends nothing, and the store appends the same events right after the script.

-- The audit context of one call. Checks up front that the stream can take the events:
-- Redis does not undo a script's writes when a later command of it fails, so an XADD
-- refused after the decision (the key holding another type) would split the two; XLEN
-- fails the same way, before anything is written.
local function audit_context(events, maxlen, user_id, time_ms, caller)
  if events then redis.call('XLEN', events) end
  return {events = events, maxlen = maxlen, user_id = user_id, time = time_ms, caller = caller}
end

local function append_event(audit, event_type, totp_id, outcome)
  if not audit.events then return end
  redis.call('XADD', audit.events, 'MAXLEN', '~', audit.maxlen, '*',
             'type', event_type, 'user_id', audit.user_id, 'totp_id', totp_id,
             'outcome', outcome, 'time', audit.time, 'caller', audit.caller)
end

-- A code check's reply {outcome, totp_id, n} (check_code.lua): no event for 'stale' (the
-- service checks again), else the check's, then 'lockout.engage' (model.EventType.LOCKOUT)
-- if it was a failure that engaged a lock (n: -1 for good, else the lock's length in ms).
local function append_check_events(audit, event_type, reply)
  local outcome, totp_id, n = reply[1], reply[2], reply[3]
  if outcome == 'stale' then return end
  append_event(audit, event_type, totp_id, outcome)
  if outcome == 'rejected' and n ~= 0 then
    append_event(audit, 'lockout.engage', totp_id, n < 0 and 'permanent' or 'temporary')
  end
end
