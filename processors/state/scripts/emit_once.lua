-- emit_once.lua, version 1: queue a notification that is not tied to a verdict change (e.g.
-- stage_upcoming) exactly once per notification id.
--
-- KEYS[1] <p>:srv:{<server_key>} (or the tenant's pause hash)   KEYS[2] the matching outbox list
-- ARGV[1] notification id   ARGV[2] record "<topic>\n<key>\n<json>"
-- Returns 1 when queued, 0 when this id was queued before.

if redis.call('HSETNX', KEYS[1], 'sent:' .. ARGV[1], '1') == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[2])
return 1
