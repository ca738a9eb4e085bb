"""The worker's batch and timer logic without services, in the manner of a topology test driver:
the same :class:`BatchProcessor` and :class:`WorkerRuntime` the worker runs, fed Kafka records in
memory, on the in-memory state store, with a recording output in place of the Kafka producer and a
clock the test sets. Output records and store state are inspected directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import pytest

from processors.classify import Classification, Connection, classify
from processors.classify.calendar import JudgementCalendar
from processors.enforcement.verdicts import rfc3339
from processors.events.metadata import MetadataRecord
from processors.kafka.commands import pause_command
from processors.kafka.delivery import DeliveryFailed, KafkaOutput
from processors.report.reader import ReportReader
from processors.settings import Settings
from processors.state.memory import MemoryStateStore
from processors.worker.policies import PolicySource
from processors.worker.processing import Authority, BatchStats, RawMessage
from processors.worker.runtime import WorkerRuntime
from tests.worker.factories import batch_envelope, encode, exchange_hop, metadata_event

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
EX01 = "contoso/ex01.contoso.com"
EX02 = "contoso/ex02.contoso.com"
SETTINGS = Settings.from_env({})
POLICIES = PolicySource()  # loading the catalog once keeps every test in milliseconds


class RecordingOutput(KafkaOutput):
    """The producer's interface, in memory: records become ``published`` when a flush succeeds."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, bytes | None, bytes | None]] = []
        self.published: list[tuple[str, bytes | None, bytes | None]] = []
        self.fail_flushes = 0  # the next n flushes fail (broker down): their records are not delivered

    def produce(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.pending.append((topic, key, value))

    async def flush(self, timeout: float = 30.0) -> None:
        records, self.pending = self.pending, []
        if self.fail_flushes:
            self.fail_flushes -= 1
            raise DeliveryFailed(f"{len(records)} records not acknowledged")
        self.published.extend(records)

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(value or b"") for name, _, value in self.published if name == topic]


@dataclass
class SetClock:
    at: datetime | None = None

    async def now(self) -> datetime | None:
        return self.at


@dataclass
class Driver:
    store: MemoryStateStore = field(default_factory=MemoryStateStore)
    output: RecordingOutput = field(default_factory=RecordingOutput)
    clock: SetClock = field(default_factory=SetClock)
    policies: PolicySource = POLICIES
    offset: int = 0

    def __post_init__(self) -> None:
        self.runtime = self.worker("test-worker:1")

    def worker(self, identity: str) -> WorkerRuntime:
        runtime = WorkerRuntime(SETTINGS, self.store, self.output, self.policies, self.clock)
        runtime.identity = identity
        runtime.ready.set()  # start() would also freeze the collector: not for a test process
        return runtime

    def message(self, key: bytes | None, value: bytes | None, topic: str = SETTINGS.topic_metadata) -> RawMessage:
        self.offset += 1
        return RawMessage(topic, 0, self.offset, key, value)

    def events(self, *events: dict[str, Any]) -> list[RawMessage]:
        return [self.message(f"{e['tenant_id']}/{e['client']['helo']}".encode(), encode(e)) for e in events]

    def feed(self, messages: Sequence[RawMessage]) -> BatchStats:
        return asyncio.run(self.runtime.process_batch(messages))

    def tick(self, at: datetime, runtime: WorkerRuntime | None = None) -> int:
        self.clock.at = at
        return asyncio.run((runtime or self.runtime).tick())

    def verdicts(self, server_key: str | None = None) -> list[dict[str, Any]]:
        return [v for v in self.output.on(SETTINGS.topic_verdicts) if server_key in (None, v["server_key"])]

    def notifications(self) -> list[tuple[str, str]]:
        return [(n["kind"], n["server_key"] or n["tenant_id"]) for n in self.output.on(SETTINGS.topic_notifications)]

    def server(self, server_key: str) -> dict[str, str]:
        return self.store.hashes[self.store.keys.server(server_key)]


def event(n: int, at: datetime, server: str = "ex01.contoso.com", tenant: str = "contoso",
          build: str = "15.1.2507.39") -> dict[str, Any]:
    return metadata_event(f"e{n}", at, tenant=tenant, server=server, build=build)


# ---------------------------------------------------------------------------------------- batches

def test_records_are_grouped_per_server_into_one_verdict_each() -> None:
    driver = Driver()
    envelope = batch_envelope(EX01, [event(1, T0), event(2, T0 + timedelta(minutes=1))])
    stats = driver.feed([driver.message(EX01.encode(), encode(envelope)),
                         *driver.events(event(3, T0, server="ex02.contoso.com"),
                                        event(4, T0, server="mx.fabrikam.com", tenant="fabrikam"))])
    assert (stats.messages, stats.records, stats.servers, stats.verdicts) == (3, 4, 3, 3)
    assert sorted(v["server_key"] for v in driver.verdicts()) == [EX01, EX02, "fabrikam/mx.fabrikam.com"]
    assert all(v["sequence"] == 1 and v["stage"] == 1 for v in driver.verdicts())
    assert asyncio.run(driver.store.tenant_servers("contoso")) == [EX01, EX02]
    assert sorted(driver.notifications()) == [("detected", EX01), ("detected", EX02),
                                              ("detected", "fabrikam/mx.fabrikam.com")]


def test_event_time_decides_not_arrival_order() -> None:
    in_order, reversed_order = Driver(), Driver()
    early, late = event(1, T0), event(2, T0 + timedelta(hours=5))
    in_order.feed(in_order.events(early))
    in_order.feed(in_order.events(late))
    reversed_order.feed(reversed_order.events(late))
    reversed_order.feed(reversed_order.events(early))
    for driver in (in_order, reversed_order):
        state = driver.server(EX01)
        assert (state["first_seen"], state["last_seen"]) == (repr(T0.timestamp()), repr(late_at(late)))
        assert state["detected_at"] == format(T0.timestamp(), ".14g")  # the earliest vulnerable evidence
        assert [v["effective_at"] for v in driver.verdicts()] == ["2026-11-02T00:00:00Z"]
    assert in_order.verdicts()[0]["issued_at"] == rfc3339(T0)  # judged at each batch's latest event
    assert reversed_order.verdicts()[0]["issued_at"] == rfc3339(T0 + timedelta(hours=5))


def late_at(document: dict[str, Any]) -> float:
    return datetime.fromisoformat(document["observed_at"]).timestamp()


def test_a_redelivered_batch_changes_nothing_and_publishes_nothing() -> None:
    driver = Driver()
    batch = driver.events(event(1, T0), event(2, T0 + timedelta(minutes=3)))
    first = driver.feed(batch)
    state, published = dict(driver.server(EX01)), list(driver.output.published)
    again = driver.feed(batch)
    assert (first.verdicts, first.notifications, again.verdicts, again.notifications) == (1, 1, 0, 0)
    assert driver.server(EX01) == state and driver.output.published == published
    assert len(driver.store.sets[driver.store.keys.server_day_hll(EX01, "2026-11-02")]) == 2


def test_bad_records_are_dead_lettered_with_their_reason_and_the_rest_is_processed() -> None:
    driver = Driver()
    broken = event(2, T0)
    del broken["event_id"]
    messages = [driver.message(EX01.encode(), b"{not json"),
                driver.message(EX01.encode(), None),
                driver.message(EX01.encode(), encode({"schema": "patchgate.other/9"})),
                driver.message(EX01.encode(), encode(batch_envelope(EX01, [event(1, T0), broken])))]
    # the processor itself, not the runtime: the runtime would count these in the process-wide metrics
    stats = asyncio.run(driver.runtime.processor.process(messages))
    letters = driver.output.on(SETTINGS.topic_deadletter)
    assert (stats.records, stats.dead_letters, stats.verdicts) == (1, 4, 1)
    assert [letter["source"]["offset"] for letter in letters] == [m.offset for m in messages]
    assert letters[2]["path"] == "$.schema"
    assert letters[3]["source"]["record_index"] == 1 and letters[3]["path"].startswith("$.records[1]")
    assert "event_id" in letters[3]["reason"]
    assert all(letter["schema"] == "patchgate.deadletter/1" and letter["reason"] for letter in letters)


# ----------------------------------------------------------------------------------------- outbox

def test_an_outbox_left_by_a_crashed_run_goes_out_with_the_next_batch_of_its_server() -> None:
    driver = Driver()
    driver.feed(driver.events(event(1, T0)))
    left = driver.store.keys.server_outbox(EX01)
    driver.store.lists[left] = [b"patchgate.verdicts\n" + EX01.encode() + b"\n{\"left\":1}"]  # committed, unsent
    driver.feed(driver.events(event(2, T0 + timedelta(minutes=1))))
    assert driver.output.published[-1] == (SETTINGS.topic_verdicts, EX01.encode(), b'{"left":1}')
    assert left not in driver.store.lists and asyncio.run(driver.store.pending_outboxes()) == []


def test_a_failed_publish_keeps_the_claim_for_recovery_and_the_retry_sends_nothing_twice() -> None:
    driver = Driver()
    driver.output.fail_flushes = 1
    with pytest.raises(DeliveryFailed):
        asyncio.run(driver.runtime.processor.process(driver.events(event(1, T0))))
    assert driver.output.published == []
    driver.feed(driver.events(event(1, T0)))  # the retry of the same batch
    assert driver.verdicts() == []  # the committed verdict is claimed by the failed attempt ...
    (_, records), = asyncio.run(driver.store.abandoned_claims(float("inf")))
    assert [r.topic for r in records] == [SETTINGS.topic_verdicts, SETTINGS.topic_notifications]  # ... for recovery


# ------------------------------------------------------------------------------------------ timer

def test_the_timer_moves_a_server_to_its_next_stage_once() -> None:
    driver = Driver()
    driver.feed(driver.events(event(1, T0)))
    notice, due = datetime(2026, 11, 25, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    assert driver.tick(notice - timedelta(seconds=1)) == 0
    assert driver.tick(notice) == 1  # a week ahead: the stage_upcoming notice, no new verdict
    assert driver.notifications()[-1] == ("stage_upcoming", EX01) and len(driver.verdicts(EX01)) == 1
    assert driver.tick(due - timedelta(seconds=1)) == 0
    assert driver.tick(due) == 1
    assert [(v["sequence"], v["stage"]) for v in driver.verdicts(EX01)] == [(1, 1), (2, 2)]
    assert driver.verdicts(EX01)[1]["issued_at"] == rfc3339(due)
    assert driver.tick(due) == 0 and len(driver.verdicts(EX01)) == 2
    assert asyncio.run(driver.store.progress())["timer"] == repr(due.timestamp())


def test_servers_due_at_one_instant_move_together_in_one_commit_each_once() -> None:
    driver = Driver()
    servers = [f"ex0{n}.contoso.com" for n in range(1, 4)]
    driver.feed(driver.events(*(event(n, T0 + timedelta(minutes=n), server=s) for n, s in enumerate(servers))))
    commits: list[int] = []
    commit = driver.store.commit

    async def counting(commits_: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        commits.append(len(commits_))
        return await commit(commits_, *args, **kwargs)

    driver.store.commit = counting  # type: ignore[assignment]  # observed, not replaced
    due = datetime(2026, 12, 2, tzinfo=UTC)
    assert driver.tick(datetime(2026, 11, 25, tzinfo=UTC)) == 3  # the three notices, one instant
    assert driver.tick(due) == 3
    assert commits == [0, 3]  # notices commit no verdict; the stage start commits the three at once
    assert [[v["stage"] for v in driver.verdicts(f"contoso/{s}")] for s in servers] == [[1, 2]] * 3
    assert {v["issued_at"] for v in driver.verdicts() if v["stage"] == 2} == {rfc3339(due)}
    assert driver.tick(due) == 0 and len(driver.verdicts()) == 6


def test_only_the_lease_holder_runs_the_timer() -> None:
    driver = Driver()
    driver.feed(driver.events(event(1, T0)))
    other = driver.worker("other-worker:2")
    due = datetime(2026, 12, 2, tzinfo=UTC)
    assert driver.tick(T0) == 0  # the first worker takes the lease
    assert driver.tick(due, other) == 0 and len(driver.verdicts(EX01)) == 1
    assert driver.tick(due) == 2 and len(driver.verdicts(EX01)) == 2  # the notice, then the next stage


def test_a_pause_command_applies_once_and_its_end_is_announced_once() -> None:
    driver = Driver()
    driver.feed(driver.events(event(1, T0)))
    at = T0 + timedelta(hours=1)
    command = pause_command("contoso", 7, False, "unit", at=at)
    message = driver.message(b"contoso", encode(command), SETTINGS.topic_commands)
    outcome = asyncio.run(driver.runtime.process_command(message))
    assert outcome is not None and outcome.kind == "pause_started"
    assert asyncio.run(driver.runtime.process_command(message)) is None  # redelivered: nothing again
    assert driver.verdicts(EX01)[-1]["paused_until"] == rfc3339(at + timedelta(days=7))
    assert driver.tick(at + timedelta(days=7)) >= 1
    assert driver.tick(at + timedelta(days=7)) == 0
    kinds = [kind for kind, owner in driver.notifications() if owner == "contoso"]
    assert kinds == ["pause_started", "pause_ended"]


def test_the_report_reads_what_the_batch_wrote() -> None:
    driver = Driver()
    driver.feed(driver.events(event(1, T0), event(2, T0 + timedelta(minutes=1)),
                              event(3, T0, server="ex02.contoso.com")))
    reader = ReportReader(driver.store, POLICIES.current.enforcement)
    rows = asyncio.run(reader.rows("contoso", T0 + timedelta(hours=1)))
    assert [(row.server_key, row.stage, row.messages_per_day[-1]) for row in rows] == [
        (EX01, 1, ("2026-11-02", 2)), (EX02, 1, ("2026-11-02", 1))]
    (summary,) = asyncio.run(reader.summaries(T0))
    assert (summary.servers, summary.stages) == (2, {"1": 2})


def test_after_a_policy_change_the_timer_classifies_every_server_again_without_new_verdicts() -> None:
    policies = PolicySource()  # this test changes the version: its own source
    driver = Driver(policies=policies)
    driver.feed(driver.events(event(1, T0), event(2, T0, server="ex02.contoso.com")))
    policies.current = replace(policies.current, version="changed", content="changed")
    later = T0 + timedelta(days=1)
    driver.tick(later)
    for server_key in (EX01, EX02):
        assert driver.server(server_key)["evidence_at"] == format(later.timestamp(), ".14g")  # judged again
    assert len(driver.verdicts()) == 2  # the same build under the same policy: the same verdicts


def test_a_server_named_by_its_connection_is_classified_per_helo_and_ip_and_cached_so() -> None:
    """A stamp without a usable ``by`` host names the server from the HELO (or IP): the worker's
    classification cache keys such a result by the connection too, so two senders of the same hop
    text stay two servers, and a repeat of one is answered from the cache."""
    processor = Driver().runtime.processor
    authority = Authority("contoso", "", None)

    def classified(record: MetadataRecord) -> Classification:
        return processor.admit_one(record, T0, authority, BatchStats())[0]

    hop = "from MBX01.corp.local (10.1.0.5) by {} with Microsoft SMTP Server; Mon, 2 Nov 2026 08:59:59 +0000"

    def record(n: int, helo: str, ip: str) -> MetadataRecord:
        hops = [hop.format("mx.internal.invalid.")]
        return cast("MetadataRecord", metadata_event(f"h{n}", T0, server=helo, hops=hops, ip=ip))

    first, second, other_ip = record(1, "ex01.contoso.com", "203.0.113.10"), \
        record(2, "ex02.contoso.com", "203.0.113.10"), record(3, "ex01.contoso.com", "203.0.113.99")
    named = [classified(r) for r in (first, second, other_ip)]
    assert [c.server_source for c in named] == ["helo", "helo", "helo"]
    assert [c.server for c in named] == ["ex01.contoso.com", "ex02.contoso.com", "ex01.contoso.com"]
    assert classified(record(4, "ex01.contoso.com", "203.0.113.10")) is named[0]
    assert named[2] is not named[0]  # another IP: another key, even for the same name


def test_the_classification_cache_holds_across_days_of_one_epoch_and_not_past_a_turning_day() -> None:
    """The worker caches a server's classification by the epoch of the day (the stretch between
    two days on which the catalogs can change a status), not by the day: a repeat on a later day
    of the same epoch is answered from the cache, one on the first day of the next epoch is judged
    afresh, and a build behind on that day is found so on it."""
    processor = Driver().runtime.processor
    authority = Authority("contoso", "", None)
    calendar = JudgementCalendar(POLICIES.current.catalog, POLICIES.current.classification,
                                 POLICIES.current.products)

    def classified(at: datetime) -> Classification:
        record = cast("MetadataRecord", metadata_event(f"e{at.timestamp()}", at, build="15.2.1748.24"))
        return processor.admit_one(record, at, authority, BatchStats())[0]

    first, last = calendar.span(T0.toordinal())
    assert first is not None and last is not None and last > T0.toordinal(), "T0's epoch spans more days"
    later = T0 + timedelta(days=last - T0.toordinal())
    assert classified(later) is classified(T0)
    turning = later + timedelta(days=1)
    assert classified(turning) is not classified(T0)
    expected = classify([("Received", exchange_hop("ex01.contoso.com", "15.2.1748.24", turning))],
                        Connection(ip="203.0.113.10", helo="ex01.contoso.com"), turning, cached=False)
    assert (classified(turning).status, classified(turning).reason) == (expected.status, expected.reason)
