"""The async Redis store: one pipelined round trip per batch, atomic per-server scripts.

Scripts are loaded once (``SCRIPT LOAD``) and called by SHA inside non-transactional pipelines;
a Redis that lost its scripts (restart) answers NOSCRIPT, and the caller retries after
:meth:`StateStore.load_scripts`.

Bounded calls: no Redis call (script or command) gets more than :data:`ARGUMENTS_MAX` elements of
any variadic list. A server with more event ids or evidence in one batch is folded by several
``observe.lua`` calls, in order, in the same round trip (:func:`observation_parts`). Every part is
safe to apply alone and to apply again (a crash between parts, then redelivery of the whole
batch): event ids go into HyperLogLogs, which ignore repeats; first/last seen are min/max; the
evidence fold keeps the newest evidence by event time; there are no counters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import resources
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis

from processors.enforcement.pauses import PauseState
from processors.state.keys import HISTORY_LENGTH, HLL_RETENTION_SECONDS, NOTIFICATIONS_KEPT, KeySchema

T = TypeVar("T")
SET_CAP = 64  # client IPs / HELO names remembered per server
# Elements of one variadic argument list per Redis call (event ids, evidence items, set members).
# Lua's unpack() fails near 8,000 values (its C stack), and a long script blocks every client.
ARGUMENTS_MAX = 1000
# The server-hash fields a batch needs back from observe.lua (enforcement.verdicts.ServerState and
# the change checks of the batch processor); the rest of the hash (verdict JSON, hop, ...) stays put.
STATE_FIELDS = ("tenant_id", "server", "status", "rule", "product", "build", "release_name", "recommended",
                "detected_at", "connector_type", "stage", "issued_at", "fingerprint", "due_at", "sequence",
                "product_id", "version")
_STATE_FIELDS_JSON = orjson.dumps(STATE_FIELDS)


def _script(name: str) -> str:
    return resources.files("processors.state").joinpath(f"scripts/{name}.lua").read_text()


@dataclass(slots=True)
class Observation:
    """One batch's worth of one server's messages, folded for ``observe.lua``."""

    server_key: str
    tenant_id: str
    server: str
    first_at: float
    last_at: float
    evidence: list[dict[str, Any]]
    latest: dict[str, Any]
    ips: list[str]
    helos: list[str]
    event_ids_by_day: dict[str, list[str]]


@dataclass(slots=True)
class Commit:
    server_key: str
    fingerprint: str
    verdict_prefix: bytes
    verdict_suffix: bytes
    stage: int
    issued_at: float
    kafka_key: str
    history: bytes
    action: str  # for metrics: report / throttle / block / paused / remediated
    notifications: list[bytes]  # outbox records


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    outbox: str
    topic: str
    key: bytes
    value: bytes


def chunked(items: Sequence[T], size: int | None = None) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (default :data:`ARGUMENTS_MAX`)."""
    size = size or ARGUMENTS_MAX
    for start in range(0, len(items), size):
        yield items[start:start + size]


def observation_parts(obs: Observation, size: int | None = None) -> list[Observation]:
    """``obs`` split so that no part carries more than ``size`` event ids or evidence items.

    Parts keep the event-time order of the evidence and the batch's scalar fields (first/last
    seen, latest message, IPs, HELO names), so each part is a valid observation on its own; folding
    them in order equals folding ``obs`` whole."""
    size = size or ARGUMENTS_MAX
    ids = [(day, event_id) for day in sorted(obs.event_ids_by_day) for event_id in obs.event_ids_by_day[day]]
    count = max(1, -(-len(ids) // size), -(-len(obs.evidence) // size))
    if count == 1:
        return [obs]
    parts = []
    for index in range(count):
        by_day: dict[str, list[str]] = {}
        for day, event_id in ids[index * size:(index + 1) * size]:
            by_day.setdefault(day, []).append(event_id)
        parts.append(replace(obs, evidence=obs.evidence[index * size:(index + 1) * size], event_ids_by_day=by_day))
    return parts


def outbox_record(topic: str, key: str, value: bytes) -> bytes:
    return f"{topic}\n{key}\n".encode() + value


def parse_outbox(outbox: str, raw: bytes) -> OutboxRecord:
    topic, key, value = raw.split(b"\n", 2)
    return OutboxRecord(outbox, topic.decode(), key, value)


def text(value: Any) -> str:
    """A Redis reply item as text (the client returns bytes)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class StateStore:
    def __init__(self, client: aioredis.Redis, keys: KeySchema) -> None:
        self.client = client
        self.keys = keys
        self._sha: dict[str, str] = {}

    @classmethod
    def from_url(cls, url: str, keys: KeySchema) -> StateStore:
        return cls(aioredis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5), keys)

    async def load_scripts(self) -> None:
        for name in ("observe", "commit_verdict", "emit_once", "claim_outbox"):
            self._sha[name] = await self.client.script_load(_script(name))

    async def close(self) -> None:
        await self.client.aclose()

    # ----------------------------------------------------------------------------- batch round trips

    async def observe(self, observations: Sequence[Observation], tenants: Iterable[str]
                      ) -> tuple[list[tuple[dict[str, str], list[str], int]], dict[str, PauseState]]:
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
                    if value is not None}, [ip.decode() for ip in result[1]], int(result[2]))
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
        for day in days:
            ids = obs.event_ids_by_day[day]
            args.append(len(ids))
            args.extend(ids)
        pipe.evalsha(self._sha["observe"], len(script_keys), *script_keys, *args)

    async def commit(self, commits: Sequence[Commit], once: Sequence[tuple[str, str, bytes]],
                     due: Sequence[tuple[str, float]], verdicts_topic: str, claim: Sequence[str] = (),
                     now: float = 0.0) -> tuple[list[int], list[OutboxRecord]]:
        """Commit changed verdicts, queue once-only notifications, schedule due times, and claim the
        outboxes in ``claim`` for publishing: one round trip.

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
        for outboxes in chunked(claim):
            pipe.sadd(keys.outbox_pending, *outboxes)
        for server_key, when in due:
            pipe.zadd(keys.due, {f"s|{server_key}": when})
            pipe.hset(keys.server(server_key), "due_at", repr(when))
        for outbox in claim:  # after the commits above, in the same round trip
            pipe.evalsha(self._sha["claim_outbox"], 3, outbox, f"{outbox}:inflight", f"{outbox}:claimed_at", repr(now))
        results = await pipe.execute()
        claimed: list[OutboxRecord] = []
        for outbox, raws in zip(claim, results[len(results) - len(claim):], strict=True):
            claimed.extend(parse_outbox(outbox, raw) for raw in raws)
        return [int(r) for r in results[: len(commits)]], claimed

    async def claim(self, outboxes: Sequence[str], now: float) -> list[OutboxRecord]:
        """Claim the given outboxes for publishing (exclusive); returns their records."""
        pipe = self.client.pipeline(transaction=False)
        for outbox in outboxes:
            pipe.evalsha(self._sha["claim_outbox"], 3, outbox, f"{outbox}:inflight", f"{outbox}:claimed_at", repr(now))
        records: list[OutboxRecord] = []
        for outbox, raws in zip(outboxes, await pipe.execute(), strict=True):
            records.extend(parse_outbox(outbox, raw) for raw in raws)
        return records

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
            pipe.delete(f"{outbox}:inflight", f"{outbox}:claimed_at")
        for marks in chunked(sorted((progress or {}).items())):
            pipe.hset(keys.progress, mapping=dict(marks))  # type: ignore[arg-type]
        for outbox in outboxes:
            pipe.exists(outbox)
        results = await pipe.execute()
        if outboxes:
            drained = [outbox for outbox, left in zip(outboxes, results[-len(outboxes):], strict=True) if not left]
            for members in chunked(drained):
                await self.client.srem(keys.outbox_pending, *members)

    async def abandoned_claims(self, older_than: float) -> list[tuple[float, list[OutboxRecord]]]:
        """In-flight records whose claim is older than ``older_than`` (epoch): their claimer died."""
        pending = await self.pending_outboxes()
        pipe = self.client.pipeline(transaction=False)
        for outbox in pending:
            pipe.get(f"{outbox}:claimed_at")
            pipe.lrange(f"{outbox}:inflight", 0, -1)
        results = await pipe.execute()
        abandoned = []
        for index, outbox in enumerate(pending):
            claimed_at, raws = results[2 * index], results[2 * index + 1]
            if raws and claimed_at is not None and float(claimed_at) < older_than:
                abandoned.append((float(claimed_at), [parse_outbox(outbox, raw) for raw in raws]))
        return abandoned

    async def pending_outboxes(self) -> list[str]:
        return sorted(text(m) for m in await self.client.smembers(self.keys.outbox_pending))

    # ---------------------------------------------------------------------------------- timer reads

    async def server_states(self, server_keys: Sequence[str]) -> list[tuple[dict[str, str], list[str]]]:
        pipe = self.client.pipeline(transaction=False)
        for server_key in server_keys:
            pipe.hgetall(self.keys.server(server_key))
            pipe.smembers(self.keys.server_ips(server_key))
        results = await pipe.execute()
        return [
            ({k.decode(): v.decode("utf-8", "replace") for k, v in results[i].items()},
             sorted(ip.decode() for ip in results[i + 1]))
            for i in range(0, len(results), 2)
        ]

    async def pause_states(self, tenants: Sequence[str]) -> dict[str, PauseState]:
        pipe = self.client.pipeline(transaction=False)
        for tenant in tenants:
            pipe.hgetall(self.keys.tenant_pause(tenant))
        return {t: pause_state_from_hash(raw) for t, raw in zip(tenants, await pipe.execute(), strict=True)}

    async def tenant_servers(self, tenant_id: str) -> list[str]:
        return sorted(text(m) for m in await self.client.smembers(self.keys.tenant_servers(tenant_id)))


def pause_state_from_hash(raw: Any) -> PauseState:
    fields = raw if isinstance(raw, dict) else {}
    decoded = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
               for k, v in fields.items()}
    used = tuple(sorted((int(k[5:]), int(v)) for k, v in decoded.items() if k.startswith("used:")))
    until = decoded.get("until")
    started = decoded.get("started_at")
    charged = decoded.get("charged_year")
    return PauseState(
        until=datetime.fromisoformat(until) if until else None,
        started_at=datetime.fromisoformat(started) if started else None,
        charged_year=int(charged) if charged else None,
        used=used,
    )


def pause_state_to_hash(state: PauseState) -> dict[str, str]:
    fields = {f"used:{year}": str(days) for year, days in state.used}
    if state.until is not None:
        fields["until"] = state.until.isoformat()
    if state.started_at is not None:
        fields["started_at"] = state.started_at.isoformat()
    if state.charged_year is not None:
        fields["charged_year"] = str(state.charged_year)
    return fields
