"""The outbox backlog gauges against real Redis: a claim waiting for the broker ages, a release ends it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from processors.metrics import REGISTRY
from processors.state.keys import KeySchema
from processors.state.store import StateStore, outbox_record
from processors.worker.outbox_backlog import export_outbox_backlog, measure_outbox_backlog

pytestmark = pytest.mark.integration

NOW = 1_900_000_000.0


def gauges() -> tuple[float | None, float | None]:
    return (REGISTRY.get_sample_value("patchgate_outbox_claims"),
            REGISTRY.get_sample_value("patchgate_outbox_claim_age_seconds"))


async def backlog_through_a_claim(store: StateStore) -> list[tuple[int, float]]:
    try:
        return await claim_and_release(store)
    finally:
        await store.close()


async def claim_and_release(store: StateStore) -> list[tuple[int, float]]:
    await store.load_scripts()
    seen = [await export_outbox_backlog(store, NOW)]
    outboxes = [store.keys.server_outbox(f"contoso/ex0{n}.contoso.com") for n in (1, 2)]
    claimed = []
    for n, (outbox, age) in enumerate(zip(outboxes, (120.0, 30.0), strict=True)):
        record = outbox_record("patchgate.notifications", "contoso", b'{"n": %d}' % n)
        _, records = await store.commit([], [(f"contoso/ex0{n + 1}.contoso.com", f"note-{n}", record)], [],
                                        "patchgate.verdicts", claim=[outbox], now=NOW - age)
        claimed.append(records)
    seen.append(await export_outbox_backlog(store, NOW))
    await store.release(claimed[0], "patchgate.notifications")
    seen.append(await export_outbox_backlog(store, NOW))
    await store.release(claimed[1], "patchgate.notifications")
    seen.append(await export_outbox_backlog(store, NOW))
    return seen


def test_the_oldest_claim_ages_until_the_broker_acknowledges(redis_url: str,
                                                             unique_name: Callable[[str], str]) -> None:
    seen = asyncio.run(backlog_through_a_claim(StateStore.from_url(redis_url, KeySchema(unique_name("pg")))))
    assert seen == [(0, 0.0), (2, 120.0), (1, 30.0), (0, 0.0)]
    assert gauges() == (0.0, 0.0)


def test_a_redis_outage_keeps_the_last_values_and_does_not_raise(unique_name: Callable[[str], str]) -> None:
    from processors.metrics import OUTBOX_CLAIMS, OUTBOX_OLDEST_CLAIM

    OUTBOX_CLAIMS.set(3)
    OUTBOX_OLDEST_CLAIM.set(45.0)
    async def measure() -> None:
        store = StateStore.from_url("redis://127.0.0.1:1/0", KeySchema(unique_name("pg")))  # nothing listens there
        try:
            await measure_outbox_backlog(store, NOW)
        finally:
            await store.close()

    asyncio.run(measure())
    assert gauges() == (3.0, 45.0)


async def plant_claim(store: StateStore, claimed_at: float) -> None:
    """A notification outbox claimed at ``claimed_at`` by a publisher that never finished."""
    try:
        await store.load_scripts()
        outbox = store.keys.server_outbox("contoso/ex01.contoso.com")
        record = outbox_record("patchgate.notifications", "contoso", b"{}")
        await store.commit([], [("contoso/ex01.contoso.com", "note-stuck", record)], [], "patchgate.verdicts",
                           claim=[outbox], now=claimed_at)
    finally:
        await store.close()


def test_a_running_worker_exports_a_claim_left_in_redis(kafka_bootstrap: str, redis_url: str,
                                                        unique_name: Callable[[str], str]) -> None:
    """The worker process measures with the lag: a claim 1,000 s old shows (recovery set beyond it)."""
    import re
    import time
    import urllib.request

    from processors.devservices.base import free_port
    from processors.devservices.worker_process import WorkerProcess
    from tests.worker.harness import isolated_settings

    port = free_port()
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name, metrics_port=port, lag_interval_s=1,
                                 outbox_recovery_s=86400)
    asyncio.run(plant_claim(StateStore.from_url(redis_url, KeySchema(settings.key_prefix)), time.time() - 1000))

    def exported() -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                text = response.read().decode()
        except OSError:  # the worker is still starting its metrics server
            return {}
        return {name: float(value) for name, value in
                re.findall(r"^(patchgate_outbox_\w+) (\S+)$", text, re.MULTILINE)}

    worker = WorkerProcess(settings)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        values: dict[str, float] = {}
        while time.monotonic() < deadline and values.get("patchgate_outbox_claims") != 1.0:
            values = exported()
            time.sleep(0.2)  # polling the endpoint until the condition holds, with a deadline
        assert values.get("patchgate_outbox_claims") == 1.0, values
        assert 1000 <= values["patchgate_outbox_claim_age_seconds"] < 1100
    finally:
        worker.stop()
