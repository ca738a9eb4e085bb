-- commit_verdict.lua, version 1: record a server's new verdict and queue what must be published.
-- Compare-and-set on the verdict fingerprint: committing the same verdict twice (redelivery,
-- two workers racing) is a no-op, so a transition is published once.
--
-- KEYS[1] <p>:srv:{<server_key>}           hash: fields verdict, fingerprint, sequence, stage
-- KEYS[2] <p>:srv:{<server_key>}:outbox    list of "<topic>\n<key>\n<json>" records to publish
-- KEYS[3] <p>:srv:{<server_key>}:history   list of transitions (JSON), newest first
--
-- ARGV[1] fingerprint   ARGV[2] verdict JSON up to the sequence value   ARGV[3] the rest of it
-- ARGV[4] stage   ARGV[5] verdicts topic   ARGV[6] Kafka key   ARGV[7] history entry (JSON)
-- ARGV[8] history length cap   ARGV[9] issued_at (epoch seconds, event time)
-- ARGV[10..] notification records "<topic>\n<key>\n<json>" (a handful; the caller refuses more than
--            processors.state.model.ARGUMENTS_MAX)
-- Returns the new sequence, or 0 when the fingerprint was already committed.

local state = KEYS[1]
if redis.call('HGET', state, 'fingerprint') == ARGV[1] then
  return 0
end
local sequence = redis.call('HINCRBY', state, 'sequence', 1)
local verdict = ARGV[2] .. sequence .. ARGV[3]
redis.call('HSET', state, 'verdict', verdict, 'fingerprint', ARGV[1], 'stage', ARGV[4], 'issued_at', ARGV[9])
redis.call('RPUSH', KEYS[2], ARGV[5] .. '\n' .. ARGV[6] .. '\n' .. verdict)
for index = 10, #ARGV do
  redis.call('RPUSH', KEYS[2], ARGV[index])
end
redis.call('LPUSH', KEYS[3], ARGV[7])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[8]) - 1)
return sequence
