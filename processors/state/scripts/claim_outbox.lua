-- claim_outbox.lua, version 1: take a server's (or tenant's) outbox for publishing, exclusively.
-- The outbox list is renamed to an in-flight list; nobody else can claim while it exists. The
-- claimer deletes it after the broker acknowledged every record (release). An in-flight list left
-- by a crashed claimer is recovered by the leader once it is older than the recovery age, after
-- checking which of its records already reached Kafka.
--
-- KEYS[1] <outbox>   KEYS[2] <outbox>:inflight (list)   KEYS[3] <outbox>:claimed_at (string)
-- ARGV[1] now (epoch seconds, wall clock: this is operational, not event time)
-- Returns the claimed records, or an empty list when there is nothing to claim or a claim is open.

if redis.call('EXISTS', KEYS[2]) == 1 then
  return {}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], ARGV[1])
return redis.call('LRANGE', KEYS[2], 0, -1)
