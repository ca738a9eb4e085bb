-- observe.lua, version 3: fold one batch (or one part of a batch) of one server's classified
-- messages into its state.
-- Idempotent: replaying the same batch (Kafka redelivery) changes nothing, and so does replaying it
-- after only its first parts were applied (a crash between parts): HLL adds ignore repeats, first
-- and last seen are min/max, evidence is kept by event time; nothing is counted up.
-- Bounded: the caller sends at most ARGV[12] event ids and evidence items per call
-- (processors.state.model.ARGUMENTS_MAX, splitting a busy server's batch into parts), and every
-- unpack() here stays within ARGV[12] values (Lua's own limit is near 8,000).
--
-- KEYS[1]  <p>:srv:{<server_key>}          hash, the server state (fields below)
-- KEYS[2]  <p>:srv:{<server_key>}:ips      set of client IPs (at most ARGV[7] members)
-- KEYS[3]  <p>:srv:{<server_key>}:helos    set of HELO names (same cap)
-- KEYS[4]  <p>:srv:{<server_key>}:outbox   list, only read: its length is returned
-- KEYS[5..] <p>:srv:{<server_key>}:hll:<day>, one per day present in the batch, in ARGV order
--
-- ARGV[1] tenant_id   ARGV[2] server FQDN   ARGV[3] earliest observed_at   ARGV[4] latest observed_at
-- ARGV[5] evidence: JSON array, in event-time order, of the build-bearing classifications:
--         {"at": epoch, "vulnerable": 1|0|-1, "fields": {status, rule, product, build, ...}}
--         vulnerable 1 = behind/unsupported (detects), 0 = current (remediates), -1 = neither
-- ARGV[6] latest message of any kind: {"at", "status", "rule", "connector_type", "helo"}
-- ARGV[7] cap of the ips/helos sets   ARGV[8] HLL expiry seconds
-- ARGV[9] JSON array of client IPs    ARGV[10] JSON array of HELO names
-- ARGV[11] JSON array of the hash fields to return (the caller's needs; the whole hash is large)
-- ARGV[12] the most values passed to one unpack() (and the most ids/evidence items per call)
-- ARGV[13..] for each HLL key, a JSON array of its event ids (one argument, not one per id: packing
--          thousands of arguments a batch cost the worker more than everything Redis does with them)
--
-- Hash fields: tenant_id, server, first_seen, last_seen (epoch seconds); evidence_at plus the
-- evidence fields (status, rule, product, build, build_long, release_name, recommended, hop,
-- reason); last_status, last_rule, last_status_at, connector_type, last_helo; detected_at (set by vulnerable evidence newer
-- than current_at, cleared by current evidence newer than it); current_at (latest current build).
-- Returns the requested hash fields (HMGET, in ARGV[11]'s order), the IP set and the outbox length
-- (a crashed run may have left records there, which the caller then publishes).

local state = KEYS[1]
redis.call('HSET', state, 'tenant_id', ARGV[1], 'server', ARGV[2])

local first_seen = tonumber(redis.call('HGET', state, 'first_seen'))
if not first_seen or tonumber(ARGV[3]) < first_seen then
  redis.call('HSET', state, 'first_seen', ARGV[3])
end
local last_seen = tonumber(redis.call('HGET', state, 'last_seen'))
if not last_seen or tonumber(ARGV[4]) > last_seen then
  redis.call('HSET', state, 'last_seen', ARGV[4])
end

for _, item in ipairs(cjson.decode(ARGV[5])) do
  local at = tonumber(item.at)
  local evidence_at = tonumber(redis.call('HGET', state, 'evidence_at'))
  if not evidence_at or at >= evidence_at then
    local flat = {'evidence_at', tostring(item.at)}
    for name, value in pairs(item.fields) do
      if value ~= cjson.null then
        flat[#flat + 1] = name
        flat[#flat + 1] = tostring(value)
      else
        redis.call('HDEL', state, name)
      end
    end
    redis.call('HSET', state, unpack(flat))
  end
  local current_at = tonumber(redis.call('HGET', state, 'current_at'))
  local detected_at = tonumber(redis.call('HGET', state, 'detected_at'))
  if item.vulnerable == 1 then
    if (not current_at or at > current_at) and (not detected_at or at < detected_at) then
      redis.call('HSET', state, 'detected_at', tostring(item.at))
    end
  elseif item.vulnerable == 0 then
    if not current_at or at > current_at then
      redis.call('HSET', state, 'current_at', tostring(item.at))
    end
    if detected_at and at > detected_at then
      redis.call('HDEL', state, 'detected_at')
    end
  end
end

local latest = cjson.decode(ARGV[6])
local status_at = tonumber(redis.call('HGET', state, 'last_status_at'))
if not status_at or tonumber(latest.at) >= status_at then
  redis.call('HSET', state, 'last_status', latest.status, 'last_rule', latest.rule,
             'last_status_at', tostring(latest.at), 'connector_type', latest.connector_type,
             'last_helo', latest.helo)
end

local cap = tonumber(ARGV[7])
local function add_capped(key, values)
  for _, value in ipairs(values) do
    if redis.call('SCARD', key) >= cap then return end
    redis.call('SADD', key, value)
  end
end
add_capped(KEYS[2], cjson.decode(ARGV[9]))
add_capped(KEYS[3], cjson.decode(ARGV[10]))

local ttl = tonumber(ARGV[8])
local unpack_max = tonumber(ARGV[12])
for k = 5, #KEYS do
  local ids = cjson.decode(ARGV[8 + k])
  for first = 1, #ids, unpack_max do
    redis.call('PFADD', KEYS[k], unpack(ids, first, math.min(#ids, first + unpack_max - 1)))
  end
  redis.call('EXPIRE', KEYS[k], ttl)
end

return {redis.call('HMGET', state, unpack(cjson.decode(ARGV[11]))), redis.call('SMEMBERS', KEYS[2]),
        redis.call('LLEN', KEYS[4])}
