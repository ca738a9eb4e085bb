"""Sentinel failover during processing: the 120-day scenario through the real worker on a real
master + replica + sentinel; the master is SIGKILLed mid-scenario (with that step's input already
in Kafka), the sentinel promotes the replica, and the result is exactly the expected one: no
verdict lost, none duplicated (sequences 1..n per server), every outbox published.

The worker runs with ``wait_replicas=1``: a batch's offsets are committed only once the replica has
its writes, so the writes a killed master took with it belong to batches Kafka delivers again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from processors.devservices.redis_sentinel import RedisSentinelGroup
from processors.devservices.worker_process import WorkerProcess
from processors.replay.driver import ReplayDriver
from processors.replay.sample import steps
from processors.settings import Settings
from processors.state.keys import KeySchema
from processors.state.store import StateStore
from tests.worker.harness import isolated_settings
from tests.worker.scenario_expectations import NOTIFICATIONS, VERDICTS
from tests.worker.test_scenario import notification_table, verdict_table

pytestmark = pytest.mark.integration

FAILOVER_AT = (41, 77)  # clock steps: the timer is moving servers through their stages


@pytest.fixture(scope="module")
def sentinel_group() -> Iterator[RedisSentinelGroup]:
    group = RedisSentinelGroup()
    try:
        group.start()
    except Exception:
        group.close()
        raise
    yield group
    group.close()


def pending_outboxes(settings: Settings) -> list[str]:
    async def read() -> list[str]:
        store = StateStore.from_url(settings.redis_url, KeySchema(settings.key_prefix))
        try:
            return await store.pending_outboxes()
        finally:
            await store.close()
    return asyncio.run(read())


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s"
        time.sleep(0.1)  # polling interval of a condition


def test_a_master_killed_mid_scenario_loses_no_verdict_and_duplicates_none(
        sentinel_group: RedisSentinelGroup, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    settings = isolated_settings(kafka_bootstrap, f"{sentinel_group.url}?wait_replicas=1&wait_timeout_ms=2000",
                                 unique_name)
    worker = WorkerProcess(settings)
    worker.start()
    driver = ReplayDriver(settings, step_timeout=90)
    try:
        all_steps = steps()
        masters = [sentinel_group.current_master()]
        for index in range(len(all_steps)):
            if index in FAILOVER_AT:
                step = all_steps[index]
                if step.kind == "mail":
                    driver.produce(driver.mail_messages(step), step.at)
                    driver.producer.flush(10)
                else:  # the clock moves: the worker's timer is busy when the master dies
                    driver.state.set_clock(step.at.timestamp())
                sentinel_group.fail_over()
                masters.append(sentinel_group.current_master())
            driver.run(all_steps, start=index, stop=index + 1)
        assert len(set(masters)) == 2 and masters[0] != masters[1] and masters[0] == masters[2]
        assert verdict_table(settings) == VERDICTS
        assert notification_table(settings) == NOTIFICATIONS
        wait_until(lambda: pending_outboxes(settings) == [], 30, "empty set of pending outboxes")
        log = worker.log_path.read_text(errors="replace")
        assert "No master found" in log or "connecting to" in log  # the worker did see the failovers
        assert "Redis replicas have the batch's writes" in log  # and waited for a replica before going on
    finally:
        driver.close()
        worker.close()
