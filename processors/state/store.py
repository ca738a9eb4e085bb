"""The async Redis store: one pipelined round trip per batch, atomic per-server scripts.

Scripts are loaded once (``SCRIPT LOAD``, :meth:`StateStore.load_scripts`, the only place) and
called by SHA inside non-transactional pipelines; a Redis that lost its scripts (restart, or a
Sentinel failover: the script cache is not replicated) answers NOSCRIPT
(:data:`processors.state.errors.ScriptsLost`), and the caller retries after loading them again
(:meth:`StateStore.commit` does so itself, see there).

One server, Redis Cluster or Sentinel (:mod:`processors.state.connection`): on Cluster a pipeline
is split by node and runs on each in parallel, so the order of commands matters only within a slot;
every script and transaction here touches one slot (:mod:`processors.state.keys`).

Bounded calls: no Redis call (script or command) gets more than :data:`ARGUMENTS_MAX` elements of
any variadic list. A server with more event ids or evidence in one batch is folded by several
``observe.lua`` calls, in order, in the same round trip (:func:`observation_parts`). Every part is
safe to apply alone and to apply again (a crash between parts, then redelivery of the whole
batch): event ids go into HyperLogLogs, which ignore repeats; first/last seen are min/max; the
evidence fold keeps the newest evidence by event time; there are no counters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from processors.enforcement.pauses import PauseOutcome, PauseState
from processors.state.connection import connect
from processors.state.errors import ReplicationBehind, ScriptsLost
from processors.state.keys import (
    DUE_SERVER,
    DUE_TENANT,
    HISTORY_LENGTH,
    HLL_RETENTION_SECONDS,
    NOTIFICATIONS_KEPT,
    STATE_FIELDS,
    KeySchema,
    ServerField,
    due_member,
)
from processors.state.model import (
    ARGUMENTS_MAX,
    SET_CAP,
    CommandState,
    Commit,
    LeaseState,
    Observation,
    ObservedState,
    OutboxRecord,
    ServerReport,
    chunked,
    observation_parts,
    outbox_record,
    parse_outbox,
    pause_state_from_hash,
    pause_state_to_hash,
    text,
)
from processors.state.protocol import CommandDecision
from processors.state.urls import ReplicationWait, replication_wait

__all__ = ["ARGUMENTS_MAX", "SET_CAP", "STATE_FIELDS", "Commit", "Observation", "OutboxRecord", "ScenarioControl",
           "StateStore", "chunked", "observation_parts", "outbox_record", "parse_outbox", "pause_state_from_hash",
           "pause_state_to_hash", "text"]

SCRIPTS = ("observe", "commit_verdict", "emit_once", "claim_outbox")
_STATE_FIELDS_JSON = orjson.dumps(STATE_FIELDS)
SOCKET_TIMEOUT_S = 10
CONNECT_TIMEOUT_S = 5


def _script(name: str) -> str:
    return resources.files("processors.state").joinpath(f"scripts/{name}.lua").read_text()


def _decoded(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


class StateStore:
    """Patchgate's state in Redis; every Redis command the worker, timer, api, report and notifier
    issue is one of these methods (see :class:`processors.state.protocol.Store`)."""

    def __init__(self, client: aioredis.Redis | aioredis.RedisCluster, keys: KeySchema,
                 wait: ReplicationWait | None = None) -> None:
        self.client: Any = client
        self.keys = keys
        self.cluster = isinstance(client, aioredis.RedisCluster)
        self.wait = wait or ReplicationWait()
        self._sha: dict[str, str] = {}

    @classmethod
    def from_url(cls, url: str, keys: KeySchema, socket_timeout: float = SOCKET_TIMEOUT_S,
                 connect_timeout: float = CONNECT_TIMEOUT_S) -> StateStore:
        """A store on the Redis that ``url`` names: one server, Cluster or Sentinel
        (:mod:`processors.state.connection`)."""
        return cls(connect(url, socket_timeout, connect_timeout), keys, replication_wait(url))

    async def load_scripts(self) -> None:
        for name in SCRIPTS:
            self._sha[name] = await self.client.script_load(_script(name))

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> None:
        await self.client.ping()

    # ----------------------------------------------------------------------------- batch round trips

    async def observe(self, observations: Sequence[Observation], tenants: Iterable[str]
                      ) -> tuple[list[ObservedState], dict[str, PauseState]]:
        """Fold every observation in, and read the pause state of the batch's tenants: one round trip.

        Returns per observation (state hash, client IPs, outbox length) and the pauses by tenant."""
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        answers: list[int] = []  # per observation, the position of its last observe.lua reply
        for obs in observations:
            for part in observation_parts(obs):
                self._queue_observe(pipe, part)
                queued += 1
            answers.append(queued - 1)
            pipe.sadd(keys.tenant_servers(obs.tenant_id), obs.server_key)
            queued += 1
        tenant_list = sorted(set(tenants))
        for members in chunked(tenant_list):
            pipe.sadd(keys.tenants, *members)
            queued += 1
        for tenant in tenant_list:
            pipe.hgetall(keys.tenant_pause(tenant))
        results = await pipe.execute()
        states = [({name: text(value) for name, value in zip(STATE_FIELDS, result[0], strict=True)
                    if value is not None}, sorted(ip.decode() for ip in result[1]), int(result[2]))
                  for result in (results[position] for position in answers)]
        pauses = {tenant: pause_state_from_hash(raw) for tenant, raw in zip(tenant_list, results[queued:], strict=True)}
        return states, pauses

    def _queue_observe(self, pipe: Any, obs: Observation) -> None:
        """Queue one ``observe.lua`` call; ``obs`` must be within :data:`ARGUMENTS_MAX` (a part)."""
        keys = self.keys
        days = sorted(obs.event_ids_by_day)
        script_keys = [keys.server(obs.server_key), keys.server_ips(obs.server_key),
                       keys.server_helos(obs.server_key), keys.server_outbox(obs.server_key)]
        script_keys += [keys.server_day_hll(obs.server_key, day) for day in days]
        args: list[Any] = [
            obs.tenant_id, obs.server, repr(obs.first_at), repr(obs.last_at),
            orjson.dumps(obs.evidence), orjson.dumps(obs.latest), SET_CAP, HLL_RETENTION_SECONDS,
            orjson.dumps(obs.ips[:SET_CAP]), orjson.dumps(obs.helos[:SET_CAP]), _STATE_FIELDS_JSON, ARGUMENTS_MAX,
        ]
        args += [orjson.dumps(obs.event_ids_by_day[day]) for day in days]
        pipe.evalsha(self._sha["observe"], len(script_keys), *script_keys, *args)

    async def commit(self, commits: Sequence[Commit], once: Sequence[tuple[str, str, bytes]],
                     due: Sequence[tuple[str, float]], verdicts_topic: str, claim: Sequence[str] = (),
                     now: float = 0.0) -> tuple[list[int], list[OutboxRecord]]:
        """:meth:`_commit`; when Redis lost the scripts (a restart or a Sentinel failover: the script
        cache is not replicated), load them and run the whole commit again at once. A pipeline goes
        on after a failed command, so the plain writes (the timer's due times) were applied without
        the scripts' (the verdicts): left so, the timer would skip a server whose due time moved on
        without its verdict. Every part is idempotent, so the second run completes the first."""
        try:
            return await self._commit(commits, once, due, verdicts_topic, claim, now)
        except ScriptsLost:
            await self.load_scripts()
            return await self._commit(commits, once, due, verdicts_topic, claim, now)

    async def _commit(self, commits: Sequence[Commit], once: Sequence[tuple[str, str, bytes]],
                      due: Sequence[tuple[str, float]], verdicts_topic: str, claim: Sequence[str],
                      now: float) -> tuple[list[int], list[OutboxRecord]]:
        """Commit changed verdicts, queue once-only notifications, schedule due times, and claim the
        outboxes in ``claim`` for publishing: one round trip (two on Redis Cluster: the records are
        queued before the outboxes are named pending, see :meth:`_forget_drained`).

        ``once``: (server_key, notification_id, outbox record); ``due``: (server_key, epoch).
        Returns the sequence assigned to each commit (0 = it was committed before) and the claimed
        records (see ``claim_outbox.lua``).
        """
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        for c in commits:
            if len(c.notifications) > ARGUMENTS_MAX:  # an evaluation yields a handful
                raise ValueError(f"{c.server_key}: {len(c.notifications)} notifications in one verdict commit")
            pipe.evalsha(
                self._sha["commit_verdict"], 3, keys.server(c.server_key), keys.server_outbox(c.server_key),
                keys.server_history(c.server_key), c.fingerprint, c.verdict_prefix, c.verdict_suffix, c.stage,
                verdicts_topic, c.kafka_key, c.history, HISTORY_LENGTH, repr(c.issued_at), *c.notifications,
            )
        for server_key, notification_id, record in once:
            pipe.evalsha(self._sha["emit_once"], 2, keys.server(server_key), keys.server_outbox(server_key),
                         notification_id, record)
        for server_key, when in due:
            pipe.zadd(keys.due, {due_member(DUE_SERVER, server_key): when})
            pipe.hset(keys.server(server_key), ServerField.DUE_AT, repr(when))
        written: list[Any] = []
        if self.cluster:  # a Cluster pipeline runs on several nodes at once: records exist before their names
            written, pipe = await pipe.execute(), self.client.pipeline(transaction=False)
        for outboxes in chunked(claim):
            pipe.sadd(keys.outbox_pending, *outboxes)
        for outbox in claim:  # after the commits above
            self._queue_claim(pipe, outbox, now)
        results = written + await pipe.execute()
        claimed = await self._claimed(claim, results[len(results) - len(claim):])
        return [int(r) for r in results[: len(commits)]], claimed

    def _queue_claim(self, pipe: Any, outbox: str, now: float) -> None:
        keys = [outbox, self.keys.outbox_inflight(outbox), self.keys.outbox_claimed_at(outbox)]
        if not self.cluster:  # the pending set shares the outbox's (only) slot: the script drops empty names
            keys.append(self.keys.outbox_pending)
        pipe.evalsha(self._sha["claim_outbox"], len(keys), *keys, repr(now))

    async def _claimed(self, outboxes: Sequence[str], answers: Sequence[Any]) -> list[OutboxRecord]:
        """The records of ``claim_outbox.lua`` answers; outboxes it found empty (answer 0, Cluster)
        leave the pending set here."""
        records: list[OutboxRecord] = []
        for outbox, raws in zip(outboxes, answers, strict=True):
            if isinstance(raws, list):
                records.extend(parse_outbox(outbox, raw) for raw in raws)
        await self._forget_drained([outbox for outbox, raws in zip(outboxes, answers, strict=True)
                                    if not isinstance(raws, list)])
        return records

    async def _forget_drained(self, outboxes: Sequence[str]) -> None:
        """Remove outboxes seen empty (nothing queued, no claim open) from the pending set, then put
        back any that a concurrent writer filled meanwhile (the set and the outboxes may live in
        different Cluster slots, so this cannot be one atomic step). A writer queues records before
        it adds the name, so a name is never missing while records wait, except when this process
        dies between the removal and the check; then the records' writer, which claims them in the
        same round trip, publishes them, and a later commit to that outbox adds the name again."""
        for part in chunked(outboxes):
            await self.client.srem(self.keys.outbox_pending, *part)
            pipe = self.client.pipeline(transaction=False)
            for outbox in part:
                pipe.exists(outbox, self.keys.outbox_inflight(outbox))
            refilled = [outbox for outbox, found in zip(part, await pipe.execute(), strict=True) if found]
            if refilled:
                await self.client.sadd(self.keys.outbox_pending, *refilled)

    async def claim(self, outboxes: Sequence[str], now: float) -> list[OutboxRecord]:
        """Claim the given outboxes for publishing (exclusive); returns their records. Outboxes with
        nothing queued and no claim open leave the pending set."""
        pipe = self.client.pipeline(transaction=False)
        for outbox in outboxes:
            self._queue_claim(pipe, outbox, now)
        return await self._claimed(outboxes, await pipe.execute())

    async def release(self, delivered: Sequence[OutboxRecord], notifications_topic: str,
                      progress: Mapping[str, int | str] | None = None) -> None:
        """After Kafka acknowledged the claimed records: end the claims, keep recent notifications,
        and record ``progress`` marks (``<p>:progress``) in the same round trip."""
        keys = self.keys
        outboxes = sorted({record.outbox for record in delivered})
        if not outboxes and not progress:
            return
        pipe = self.client.pipeline(transaction=False)
        for record in delivered:
            if record.topic == notifications_topic:
                tenant = record.key.decode()
                pipe.lpush(keys.tenant_notifications(tenant), record.value)
                pipe.ltrim(keys.tenant_notifications(tenant), 0, NOTIFICATIONS_KEPT - 1)
        for outbox in outboxes:
            pipe.delete(keys.outbox_inflight(outbox), keys.outbox_claimed_at(outbox))
        for marks in chunked(sorted((progress or {}).items())):
            pipe.hset(keys.progress, mapping=dict(marks))  # type: ignore[arg-type]
        for outbox in outboxes:
            pipe.exists(outbox)
        self._queue_replication_wait(pipe)
        results = await pipe.execute()
        if self.wait.replicas:
            self._check_replicated(results.pop())
        if outboxes:
            await self._forget_drained([outbox for outbox, left in zip(outboxes, results[-len(outboxes):], strict=True)
                                        if not left])

    def _queue_replication_wait(self, pipe: Any) -> None:
        """With ``wait_replicas`` set: end the round trip with ``WAIT``, which returns once that many
        replicas have every write made so far (this connection's last write comes after the batch's
        others), or after the timeout. The caller commits Kafka offsets after this call, so a batch
        whose writes a failover could lose is delivered again (Redis replication is asynchronous)."""
        if self.wait.replicas:
            pipe.execute_command("WAIT", self.wait.replicas, self.wait.timeout_ms)

    def _check_replicated(self, acknowledged: Any) -> None:
        if int(acknowledged) < self.wait.replicas:
            raise ReplicationBehind(f"{acknowledged} of {self.wait.replicas} Redis replicas have the batch's writes "
                                    f"after {self.wait.timeout_ms} ms: it will be processed again")

    async def abandoned_claims(self, older_than: float) -> list[tuple[float, list[OutboxRecord]]]:
        """In-flight records whose claim is older than ``older_than`` (epoch): their claimer died."""
        pending = await self.pending_outboxes()
        pipe = self.client.pipeline(transaction=False)
        for outbox in pending:
            pipe.get(self.keys.outbox_claimed_at(outbox))
            pipe.lrange(self.keys.outbox_inflight(outbox), 0, -1)
        results = await pipe.execute()
        abandoned = []
        for index, outbox in enumerate(pending):
            claimed_at, raws = results[2 * index], results[2 * index + 1]
            if raws and claimed_at is not None and float(claimed_at) < older_than:
                abandoned.append((float(claimed_at), [parse_outbox(outbox, raw) for raw in raws]))
        return abandoned

    async def pending_outboxes(self) -> list[str]:
        return sorted(text(m) for m in await self.client.smembers(self.keys.outbox_pending))

    async def mark_progress(self, marks: Mapping[str, int | str]) -> None:
        """Record progress marks (``<p>:progress``): offsets processed, by whom, the timer's clock."""
        if not marks:
            return
        pipe = self.client.pipeline(transaction=False)
        for part in chunked(sorted(marks.items())):
            pipe.hset(self.keys.progress, mapping=dict(part))  # type: ignore[arg-type]
        self._queue_replication_wait(pipe)
        results = await pipe.execute()
        if self.wait.replicas:
            self._check_replicated(results[-1])

    async def progress(self) -> dict[str, str]:
        return _decoded(await self.client.hgetall(self.keys.progress))

    # ---------------------------------------------------------------------------------- state reads

    async def server_states(self, server_keys: Sequence[str]) -> list[tuple[dict[str, str], list[str]]]:
        pipe = self.client.pipeline(transaction=False)
        for server_key in server_keys:
            pipe.hgetall(self.keys.server(server_key))
            pipe.smembers(self.keys.server_ips(server_key))
        results = await pipe.execute()
        return [(_decoded(results[i]), sorted(text(ip) for ip in results[i + 1])) for i in range(0, len(results), 2)]

    async def pause_states(self, tenants: Sequence[str]) -> dict[str, PauseState]:
        pipe = self.client.pipeline(transaction=False)
        for tenant in tenants:
            pipe.hgetall(self.keys.tenant_pause(tenant))
        return {t: pause_state_from_hash(raw) for t, raw in zip(tenants, await pipe.execute(), strict=True)}

    async def tenant_servers(self, tenant_id: str) -> list[str]:
        return sorted(text(m) for m in await self.client.smembers(self.keys.tenant_servers(tenant_id)))

    async def tenants(self) -> list[str]:
        return sorted(text(m) for m in await self.client.smembers(self.keys.tenants))

    async def tenant_known(self, tenant_id: str) -> bool:
        return bool(await self.client.sismember(self.keys.tenants, tenant_id))  # type: ignore[misc]

    # ------------------------------------------------------------------------------ operator commands

    async def record_command(self, tenant_id: str, command_id: str, decide: CommandDecision
                             ) -> tuple[str, PauseOutcome | None]:
        """Mark the command applied (and open) and change the pause, in one transaction on the
        tenant's keys (one Redis Cluster slot); ``decide`` computes the outcome and the notification
        record from the current pause, and runs again if a concurrent writer changed it.

        Returns (APPLIED, outcome), or (OPEN | CLOSED, None) for a command applied before whose
        effects may be incomplete / are complete (:class:`CommandState`)."""
        keys = self.keys
        pause, commands, still_open = (keys.tenant_pause(tenant_id), keys.tenant_commands(tenant_id),
                                       keys.tenant_commands_open(tenant_id))
        async with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(pause, commands, still_open)
                    if await pipe.sismember(commands, command_id):
                        is_open = await pipe.sismember(still_open, command_id)
                        await pipe.reset()
                        return (CommandState.OPEN if is_open else CommandState.CLOSED), None
                    outcome, record = decide(pause_state_from_hash(await pipe.hgetall(pause)))
                    pipe.multi()
                    pipe.sadd(commands, command_id)
                    pipe.sadd(still_open, command_id)
                    if outcome.kind != "pause_refused":
                        pipe.delete(pause)
                        pipe.hset(pause, mapping=pause_state_to_hash(outcome.state))  # type: ignore[arg-type]
                    pipe.rpush(keys.tenant_outbox(tenant_id), record)
                    await pipe.execute()
                    return CommandState.APPLIED, outcome
                except WatchError:
                    continue

    async def queue_tenant_work(self, tenant_id: str, pause_end: float | None) -> None:
        """Mark the tenant's outbox pending and, given ``pause_end``, schedule the timer for it."""
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(keys.outbox_pending, keys.tenant_outbox(tenant_id))
        if pause_end is not None:
            pipe.zadd(keys.due, {due_member(DUE_TENANT, tenant_id): pause_end})
        await pipe.execute()

    async def complete_command(self, tenant_id: str, command_id: str) -> None:
        """The command's effects are complete: seen again, it changes nothing."""
        await self.client.srem(self.keys.tenant_commands_open(tenant_id), command_id)  # type: ignore[misc]

    async def emit_tenant_once(self, tenant_id: str, notification_id: str, record: bytes) -> bool:
        """Queue a tenant notification once per id (``emit_once.lua`` on the pause hash); mark the
        outbox pending. Returns whether it was queued now."""
        keys = self.keys
        queued = await self.client.evalsha(self._sha["emit_once"], 2, keys.tenant_pause(tenant_id),  # type: ignore[misc]
                                           keys.tenant_outbox(tenant_id), notification_id, record)
        await self.client.sadd(keys.outbox_pending, keys.tenant_outbox(tenant_id))  # type: ignore[misc]
        return bool(queued)

    # ------------------------------------------------------------------------------------ the timer

    async def due_items(self, until: float, limit: int) -> list[tuple[str, float]]:
        """Up to ``limit`` timer items due at or before ``until``: (member, due epoch), earliest first."""
        due: list[tuple[bytes, float]] = await self.client.zrangebyscore(  # type: ignore[assignment]
            self.keys.due, "-inf", until, start=0, num=limit, withscores=True)
        return [(text(member), float(score)) for member, score in due]

    async def remove_due(self, member: str) -> None:
        await self.client.zrem(self.keys.due, member)

    async def remove_due_unless_renewed(self, member: str, score: float) -> None:
        """Remove a handled item unless handling it scheduled a later time (which replaced the score)."""
        current = await self.client.zscore(self.keys.due, member)
        if current is not None and float(current) <= score:
            await self.client.zrem(self.keys.due, member)

    async def hold_timer_lease(self, identity: str, ttl_ms: int) -> str:
        """Take or renew the lease that makes ``identity`` the one running the timer (:class:`LeaseState`)."""
        key = self.keys.timer_lease
        if await self.client.set(key, identity, nx=True, px=ttl_ms):
            return LeaseState.ACQUIRED
        if text(await self.client.get(key) or b"") == identity:
            await self.client.pexpire(key, ttl_ms)
            return LeaseState.RENEWED
        return LeaseState.HELD_ELSEWHERE

    async def clock_now(self) -> float | None:
        """The scenario clock (epoch seconds), or None while nobody set it."""
        raw = await self.client.get(self.keys.clock)
        return float(raw) if raw else None

    async def set_clock(self, epoch: float) -> None:
        await self.client.set(self.keys.clock, repr(epoch))

    # ------------------------------------------------------------------------- reports, api, notifier

    async def server_reports(self, server_keys: Sequence[str], days: Sequence[str], chunk: int
                             ) -> list[ServerReport]:
        """Hash, IPs, HELO names and messages per day (HyperLogLog counts) of each server that
        has state, one round trip per ``chunk`` servers."""
        reports: list[ServerReport] = []
        for part in chunked(server_keys, chunk):
            pipe = self.client.pipeline(transaction=False)
            for server_key in part:
                pipe.hgetall(self.keys.server(server_key))
                pipe.smembers(self.keys.server_ips(server_key))
                pipe.smembers(self.keys.server_helos(server_key))
                for day in days:
                    # one key per PFCOUNT (the Cluster pipeline refuses the multi-key method)
                    pipe.execute_command("PFCOUNT", self.keys.server_day_hll(server_key, day))
            results = iter(await pipe.execute())
            for server_key in part:
                raw, ips, helos = next(results), next(results), next(results)
                counts = [(day, int(next(results))) for day in days]
                if raw:  # else: listed in the tenant set but its state is gone
                    reports.append(ServerReport(server_key, _decoded(raw), [text(ip) for ip in ips],
                                                [text(helo) for helo in helos], counts))
        return reports

    async def server_stages(self, server_keys: Sequence[str], chunk: int) -> list[str | None]:
        """The committed stage of each server (None: no verdict yet), one round trip per ``chunk``."""
        stages: list[str | None] = []
        for part in chunked(server_keys, chunk):
            pipe = self.client.pipeline(transaction=False)
            for server_key in part:
                pipe.hget(self.keys.server(server_key), ServerField.STAGE)
            stages.extend(None if stage is None else text(stage) for stage in await pipe.execute())
        return stages

    async def tenant_overview(self, tenants: Sequence[str]) -> list[tuple[list[str], PauseState]]:
        """Per tenant: its server keys (sorted) and its pause, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for tenant in tenants:
            pipe.smembers(self.keys.tenant_servers(tenant))
            pipe.hgetall(self.keys.tenant_pause(tenant))
        results = await pipe.execute()
        return [(sorted(text(m) for m in results[2 * i]), pause_state_from_hash(results[2 * i + 1]))
                for i in range(len(tenants))]

    async def notifications(self, tenant_id: str, limit: int) -> list[bytes]:
        """The tenant's newest ``limit`` notifications as published (JSON), newest first."""
        raws = await self.client.lrange(self.keys.tenant_notifications(tenant_id), 0, limit - 1)  # type: ignore[misc]
        return [raw if isinstance(raw, bytes) else raw.encode() for raw in raws]

    async def webhook_delivered_at(self, tenant_id: str, notification_id: str) -> float | None:
        score = await self.client.zscore(self.keys.tenant_webhook_delivered(tenant_id), notification_id)
        return None if score is None else float(score)

    async def mark_webhook_delivered(self, tenant_id: str, notification_id: str, now: float, ttl_s: int) -> None:
        """Remember a delivered id; forget ids older than ``ttl_s``; the set expires ``ttl_s`` after."""
        key = self.keys.tenant_webhook_delivered(tenant_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(key, {notification_id: now})
        pipe.zremrangebyscore(key, "-inf", now - ttl_s)
        pipe.expire(key, ttl_s)
        await pipe.execute()


class ScenarioControl:
    """Blocking access for scenario drivers (replay, demo): move the scenario clock, read progress
    marks, delete a finished scenario's keys."""

    def __init__(self, url: str, keys: KeySchema) -> None:
        self.client: Any = connect(url, SOCKET_TIMEOUT_S, CONNECT_TIMEOUT_S, blocking=True)
        self.keys = keys

    def set_clock(self, epoch: float) -> None:
        self.client.set(self.keys.clock, repr(epoch))

    def progress(self) -> dict[str, str]:
        return _decoded(self.client.hgetall(self.keys.progress))  # type: ignore[arg-type]

    def delete_all(self, page: int) -> int:
        """Delete every key under the prefix (SCAN and DELETE in pages of ``page``, never KEYS);
        returns how many were deleted."""
        found = list(self.client.scan_iter(match=f"{self.keys.prefix}:*", count=page))
        for part in chunked(found, page):
            self.client.delete(*part)
        return len(found)

    def close(self) -> None:
        self.client.close()
