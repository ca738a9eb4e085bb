"""The worker's batch, timer and command logic on a real three-master Redis Cluster: the same
:class:`WorkerRuntime` as the batch unit tests (recording output, a clock the test sets), with the
Redis store in place of the in-memory one, so every script, pipeline and the pause transaction run
against the cluster's slot rules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from processors.enforcement.verdicts import rfc3339
from processors.kafka.commands import pause_command
from processors.report.reader import ReportReader
from processors.state.keys import KeySchema
from processors.state.store import StateStore
from processors.worker.processing import BatchStats, RawMessage
from processors.worker.runtime import WorkerRuntime
from tests.worker.factories import encode
from tests.worker.test_batch_unit import EX01, EX02, POLICIES, SETTINGS, T0, RecordingOutput, SetClock, event

pytestmark = pytest.mark.integration
T = TypeVar("T")


class ClusterDriver:
    """Feeds Kafka records and clock ticks to a worker runtime whose store is on the cluster; one
    event loop for the driver's life (the Redis client's connections belong to it)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.runner = asyncio.Runner()
        self.store = StateStore.from_url(url, KeySchema(prefix))
        self.run(self.store.load_scripts())
        self.output, self.clock, self.offset = RecordingOutput(), SetClock(), 0
        self.runtime = self.worker("test-worker:1")

    def run(self, action: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(action)

    def worker(self, identity: str) -> WorkerRuntime:
        runtime = WorkerRuntime(SETTINGS, self.store, self.output, POLICIES, self.clock)
        runtime.identity = identity
        runtime.ready.set()
        return runtime

    def message(self, key: bytes, value: bytes, topic: str = SETTINGS.topic_metadata) -> RawMessage:
        self.offset += 1
        return RawMessage(topic, 0, self.offset, key, value)

    def events(self, *events: dict[str, Any]) -> list[RawMessage]:
        return [self.message(f"{e['tenant_id']}/{e['client']['helo']}".encode(), encode(e)) for e in events]

    def feed(self, messages: Sequence[RawMessage]) -> BatchStats:
        return self.run(self.runtime.process_batch(messages))

    def tick(self, at: datetime, runtime: WorkerRuntime | None = None) -> int:
        self.clock.at = at
        return self.run((runtime or self.runtime).tick())

    def verdicts(self, server_key: str | None = None) -> list[dict[str, Any]]:
        return [v for v in self.output.on(SETTINGS.topic_verdicts) if server_key in (None, v["server_key"])]

    def notifications(self) -> list[tuple[str, str]]:
        return [(n["kind"], n["server_key"] or n["tenant_id"]) for n in self.output.on(SETTINGS.topic_notifications)]

    def server(self, server_key: str) -> dict[str, str]:
        return self.run(self.store.server_states([server_key]))[0][0]

    def close(self) -> None:
        self.run(self.store.close())
        self.runner.close()


@pytest.fixture
def driver(redis_cluster_url: str, unique_name: Callable[[str], str]) -> Iterator[ClusterDriver]:
    made = ClusterDriver(redis_cluster_url, unique_name("pg"))
    yield made
    made.close()


def test_records_are_grouped_per_server_and_a_redelivery_changes_nothing(driver: ClusterDriver) -> None:
    batch = driver.events(event(1, T0), event(2, T0 + timedelta(minutes=1)), event(3, T0, server="ex02.contoso.com"),
                          event(4, T0, server="mx.fabrikam.com", tenant="fabrikam"))
    stats = driver.feed(batch)
    assert (stats.records, stats.servers, stats.verdicts) == (4, 3, 3)
    assert sorted(v["server_key"] for v in driver.verdicts()) == [EX01, EX02, "fabrikam/mx.fabrikam.com"]
    state, published = driver.server(EX01), list(driver.output.published)
    again = driver.feed(batch)
    assert (again.verdicts, again.notifications) == (0, 0)
    assert driver.server(EX01) == state and driver.output.published == published
    assert driver.run(driver.store.tenant_servers("contoso")) == [EX01, EX02]
    assert driver.run(driver.store.pending_outboxes()) == []


def test_the_timer_moves_a_server_to_its_next_stage_once_and_only_the_lease_holder_runs(
        driver: ClusterDriver) -> None:
    driver.feed(driver.events(event(1, T0)))
    other = driver.worker("other-worker:2")
    notice, due = datetime(2026, 11, 25, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    assert driver.tick(notice - timedelta(seconds=1)) == 0
    assert driver.tick(due, other) == 0  # the lease is the first worker's
    assert driver.tick(notice) == 1 and driver.notifications()[-1] == ("stage_upcoming", EX01)
    assert driver.tick(due) == 1 and driver.tick(due) == 0
    assert [(v["sequence"], v["stage"]) for v in driver.verdicts(EX01)] == [(1, 1), (2, 2)]
    assert driver.verdicts(EX01)[1]["issued_at"] == rfc3339(due)
    assert driver.run(driver.store.progress())["timer"] == repr(due.timestamp())
    assert driver.run(driver.store.pending_outboxes()) == []  # the once-only notice left nothing behind


def test_a_pause_command_applies_once_and_its_end_is_announced_once(driver: ClusterDriver) -> None:
    driver.feed(driver.events(event(1, T0)))
    at = T0 + timedelta(hours=1)
    message = driver.message(b"contoso", encode(pause_command("contoso", 7, False, "unit", at=at)),
                             SETTINGS.topic_commands)
    outcome = driver.run(driver.runtime.process_command(message))
    assert outcome is not None and outcome.kind == "pause_started"
    assert driver.run(driver.runtime.process_command(message)) is None
    assert driver.verdicts(EX01)[-1]["paused_until"] == rfc3339(at + timedelta(days=7))
    assert driver.tick(at + timedelta(days=7)) >= 1 and driver.tick(at + timedelta(days=7)) == 0
    assert [kind for kind, owner in driver.notifications() if owner == "contoso"] == ["pause_started", "pause_ended"]


def test_the_report_reads_what_the_batch_wrote(driver: ClusterDriver) -> None:
    driver.feed(driver.events(event(1, T0), event(2, T0 + timedelta(minutes=1)),
                              event(3, T0, server="ex02.contoso.com")))
    rows = driver.run(ReportReader(driver.store, POLICIES.current.enforcement).rows("contoso", T0 + timedelta(hours=1)))
    assert [(row.server_key, row.stage, row.messages_per_day[-1]) for row in rows] == [
        (EX01, 1, ("2026-11-02", 2)), (EX02, 1, ("2026-11-02", 1))]
