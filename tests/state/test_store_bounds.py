"""Every Redis call the store makes stays within ARGUMENTS_MAX elements per variadic list (unit)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from processors.state.keys import KeySchema
from processors.state.store import (
    ARGUMENTS_MAX,
    STATE_FIELDS,
    Commit,
    Observation,
    OutboxRecord,
    StateStore,
    observation_parts,
)

OBSERVE_FIXED_ARGV = 12  # tenant .. unpack bound; then per day: count, ids


def busy_observation(ids: int = 10_000, evidence: int = 2_500, days: int = 1) -> Observation:
    by_day: dict[str, list[str]] = {}
    for n in range(ids):
        by_day.setdefault(f"2026-11-{2 + n % days:02d}", []).append(f"event-{n}")
    return Observation(
        server_key="contoso/ex01.contoso.com", tenant_id="contoso", server="ex01.contoso.com",
        first_at=1.0, last_at=2.0,
        evidence=[{"at": float(n), "vulnerable": n % 2, "fields": {"build": str(n)}} for n in range(evidence)],
        latest={"at": 2.0, "status": "behind", "rule": "baseline", "connector_type": "OnPremises", "helo": "h"},
        ips=[f"192.0.2.{n % 250}" for n in range(300)], helos=[f"h{n}" for n in range(300)],
        event_ids_by_day=by_day,
    )


class RecordingPipeline:
    """Stands in for a redis-py pipeline: records each call and answers like Redis would."""

    def __init__(self, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        self.calls = calls
        self.queued: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))
            self.queued.append(self._answer(name, args))
        return call

    @staticmethod
    def _answer(name: str, args: tuple[Any, ...]) -> Any:
        if name == "evalsha":
            return {"observe": [[None] * len(STATE_FIELDS), [], 0], "claim_outbox": []}.get(args[0], 1)
        return {"hgetall": {}, "exists": 0}.get(name, 1)

    async def execute(self) -> list[Any]:
        answers, self.queued = self.queued, []
        return answers


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def pipeline(self, transaction: bool = True) -> RecordingPipeline:
        return RecordingPipeline(self.calls)

    async def srem(self, *args: Any) -> int:
        self.calls.append(("srem", args, {}))
        return 1

    async def smembers(self, key: str) -> set[bytes]:
        return set()


def recording_store() -> tuple[StateStore, RecordingClient]:
    client = RecordingClient()
    store = StateStore(client, KeySchema("pg"))  # type: ignore[arg-type]
    store._sha = {name: name for name in ("observe", "commit_verdict", "emit_once", "claim_outbox")}
    return store, client


def variadic_sizes(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[int]:
    """The length of every variadic list in one recorded call."""
    if name == "evalsha" and args[0] == "observe":
        numkeys = args[1]
        argv = args[2 + numkeys:]
        assert argv[11] == ARGUMENTS_MAX  # the bound observe.lua applies to its own unpack() calls
        days = numkeys - 4
        return [days, len(argv) - OBSERVE_FIXED_ARGV - days, len(orjson.loads(argv[4])),
                len(orjson.loads(argv[8])), len(orjson.loads(argv[9]))]
    if name == "evalsha":
        return [len(args) - 2 - args[1]]
    if "mapping" in kwargs:
        return [len(kwargs["mapping"])]
    return [len(args) - 1]


def test_observation_parts_cover_the_observation_in_order() -> None:
    obs = busy_observation(ids=10_000, evidence=2_500, days=3)
    parts = observation_parts(obs)
    assert len(parts) == 10
    assert [item for part in parts for item in part.evidence] == obs.evidence
    ids = sorted((day, i) for part in parts for day, day_ids in part.event_ids_by_day.items() for i in day_ids)
    assert ids == sorted((day, i) for day, day_ids in obs.event_ids_by_day.items() for i in day_ids)
    assert all(sum(map(len, p.event_ids_by_day.values())) <= ARGUMENTS_MAX for p in parts)
    assert all((p.first_at, p.last_at, p.latest, p.ips) == (obs.first_at, obs.last_at, obs.latest, obs.ips)
               for p in parts)
    small = busy_observation(ids=ARGUMENTS_MAX, evidence=ARGUMENTS_MAX)
    assert observation_parts(small) == [small]


def test_no_store_call_gets_more_than_the_bound() -> None:
    store, client = recording_store()
    tenants = [f"tenant-{n}" for n in range(2_500)]
    outboxes = [f"pg:srv:{{t{n}/s}}:outbox" for n in range(2_500)]
    commit = Commit(server_key="contoso/ex01.contoso.com", fingerprint="f", verdict_prefix=b"{", verdict_suffix=b"}",
                    stage=1, issued_at=1.0, kafka_key="contoso/ex01.contoso.com", history=b"{}", action="report",
                    notifications=[b"n"])

    async def scenario() -> None:
        states, pauses = await store.observe([busy_observation(days=2), busy_observation(ids=3, evidence=1)], tenants)
        assert len(states) == 2 and len(pauses) == len(tenants)
        await store.commit([commit], [], [], "verdicts", claim=outboxes, now=1.0)
        delivered = [OutboxRecord(outbox, "verdicts", b"k", b"v") for outbox in outboxes]
        await store.release(delivered, "notifications", {f"metadata:{p}": p for p in range(2_500)})

    asyncio.run(scenario())
    sizes = {name: max(size for n, a, k in client.calls if n == name for size in variadic_sizes(n, a, k))
             for name in {name for name, _, _ in client.calls}}
    assert all(size <= ARGUMENTS_MAX for size in sizes.values()), sizes
    observe_calls = [a for n, a, _ in client.calls if n == "evalsha" and a[0] == "observe"]
    assert len(observe_calls) == 10 + 1  # the busy server in ten parts, the quiet one in one
    assert sizes["sadd"] == sizes["srem"] == sizes["hset"] == ARGUMENTS_MAX  # really chunked, not dropped
