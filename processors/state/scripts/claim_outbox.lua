-- claim_outbox.lua, version 2: take a server's (or tenant's) outbox for publishing, exclusively.
-- The outbox list is renamed to an in-flight list; nobody else can claim while it exists. The
-- claimer deletes it after the broker acknowledged every record (release). An in-flight list left
-- by a crashed claimer is recovered by the leader once it is older than the recovery age, after
-- checking which of its records already reached Kafka.
-- An outbox with nothing queued and no claim open leaves the set of pending outboxes here, in the
-- same step, when that set is in this script's slot (KEYS[4] given: one Redis server or Sentinel);
-- on Redis Cluster it is in another slot, the script answers 0 and the caller removes the name.
--
-- KEYS[1] <outbox>   KEYS[2] <outbox>:inflight (list)   KEYS[3] <outbox>:claimed_at (string)
-- KEYS[4] (optional) <p>:outbox:pending (set)
-- ARGV[1] now (epoch seconds, wall clock: this is operational, not event time)
-- Returns the claimed records; an empty list when a claim is open, or when there is nothing to
-- claim and the name left KEYS[4]; 0 when there is nothing to claim and KEYS[4] was not given.

if redis.call('EXISTS', KEYS[2]) == 1 then
  return {}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  if KEYS[4] then
    redis.call('SREM', KEYS[4], KEYS[1])
    return {}
  end
  return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], ARGV[1])
return redis.call('LRANGE', KEYS[2], 0, -1)
