"""A very busy server (10,000 messages of one day in one batch) against real Redis and the real broker.

Its event ids and evidence reach ``observe.lua`` in parts of at most ARGUMENTS_MAX; applying only
the first parts (a crash between them) and then the whole batch again (redelivery) ends in the
same state as one clean run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis

import processors.state.store as store_module
from processors.kafka.delivery import KafkaOutput
from processors.settings import Settings
from processors.state.keys import KeySchema
from processors.state.store import Observation, StateStore, observation_parts
from processors.worker.clock import WallClock
from processors.worker.policies import PolicySource
from processors.worker.processing import RawMessage
from processors.worker.runtime import WorkerRuntime
from tests.worker.factories import batch_envelope, metadata_event
from tests.worker.harness import isolated_settings, read_topic

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
SERVER_KEY = "contoso/ex01.contoso.com"


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> Settings:
    return isolated_settings(kafka_bootstrap, redis_url, unique_name)


def envelopes(records: int, per_envelope: int = 1000) -> list[RawMessage]:
    events = [metadata_event(f"busy-{n}", T0 + timedelta(seconds=n)) for n in range(records)]
    return [RawMessage("metadata", 0, offset, SERVER_KEY.encode(),
                       orjson.dumps(batch_envelope(SERVER_KEY, events[start:start + per_envelope])))
            for offset, start in enumerate(range(0, records, per_envelope))]


def test_ten_thousand_records_of_one_server_in_one_batch(settings: Settings) -> None:
    async def scenario() -> None:
        store = StateStore.from_url(settings.redis_url, KeySchema(settings.key_prefix))
        runtime = WorkerRuntime(settings, store, KafkaOutput(settings.kafka), PolicySource(), WallClock())
        await runtime.start()
        try:
            stats = await asyncio.wait_for(runtime.processor.process(envelopes(10_000)), timeout=60)
        finally:
            await store.close()
        assert (stats.records, stats.dead_letters, stats.servers, stats.verdicts) == (10_000, 0, 1, 1)

    asyncio.run(scenario())
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySchema(settings.key_prefix)
    count = client.pfcount(keys.server_day_hll(SERVER_KEY, T0.date().isoformat()))
    assert abs(count - 10_000) <= 200, count  # HyperLogLog: 0.81 % standard error, 2 % is 2.5 sigma
    state = {k.decode(): v.decode() for k, v in client.hgetall(keys.server(SERVER_KEY)).items()}  # type: ignore[union-attr]
    assert float(state["first_seen"]) == T0.timestamp()
    assert float(state["last_seen"]) == (T0 + timedelta(seconds=9_999)).timestamp()
    assert state["build"] == "15.1.2507.39" and state["status"] in {"behind", "unsupported"}
    verdicts = [value for _, value in read_topic(settings.kafka_bootstrap, settings.topic_verdicts)]
    assert [v["server_key"] for v in verdicts] == [SERVER_KEY]


def seesaw_observation(ids: int) -> Observation:
    """Evidence alternating between a vulnerable and a current build: every item changes the fold."""
    evidence: list[dict[str, Any]] = []
    for n in range(ids):
        vulnerable = n % 3 != 1
        build = "15.1.2507.39" if vulnerable else "15.1.2507.61"
        evidence.append({"at": T0.timestamp() + n, "vulnerable": 1 if vulnerable else 0,
                         "fields": {"status": "behind" if vulnerable else "current", "build": build,
                                    "rule": "baseline" if vulnerable else "current_su", "reason": None}})
    return Observation(
        server_key=SERVER_KEY, tenant_id="contoso", server="ex01.contoso.com",
        first_at=T0.timestamp(), last_at=T0.timestamp() + ids - 1, evidence=evidence,
        latest={"at": T0.timestamp() + ids - 1, "status": "behind", "rule": "baseline",
                "connector_type": "OnPremises", "helo": "ex01.contoso.com"},
        ips=["203.0.113.10"], helos=["ex01.contoso.com"],
        event_ids_by_day={T0.date().isoformat(): [f"e-{n}" for n in range(ids)],
                          (T0 + timedelta(days=1)).date().isoformat(): [f"f-{n}" for n in range(ids // 2)]},
    )


def test_a_crash_between_parts_then_redelivery_ends_where_one_clean_run_ends(
        redis_url: str, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    obs = seesaw_observation(3_000)
    assert len(observation_parts(obs)) == 5  # 4,500 event ids

    async def fold(prefix: str, *runs: list[Observation]) -> tuple[dict[Any, Any], list[int]]:
        store = StateStore.from_url(redis_url, KeySchema(prefix))
        await store.load_scripts()
        try:
            for run in runs:
                await store.observe(run, ["contoso"])
            days = sorted(obs.event_ids_by_day)
            counts = [await store.client.pfcount(store.keys.server_day_hll(SERVER_KEY, day)) for day in days]
            return await store.client.hgetall(store.keys.server(SERVER_KEY)), counts
        finally:
            await store.close()

    async def scenario() -> None:
        clean = await fold(unique_name("clean"), [obs])
        crashed = await fold(unique_name("crashed"), observation_parts(obs)[:3], [obs])  # died after part 3
        twice = await fold(unique_name("twice"), [obs], [obs])
        monkeypatch.setattr(store_module, "ARGUMENTS_MAX", 10_000)  # the same fold in a single call
        whole = await fold(unique_name("whole"), [obs])
        assert clean == crashed == twice == whole
        fields, counts = clean
        assert fields[b"build"] == b"15.1.2507.39" and float(fields[b"detected_at"]) == T0.timestamp() + 2_999
        assert float(fields[b"current_at"]) == T0.timestamp() + 2_998
        assert abs(counts[0] - 3_000) <= 60 and abs(counts[1] - 1_500) <= 30

    asyncio.run(scenario())
