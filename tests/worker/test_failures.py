"""The real worker under poison input, a Redis outage, and with two workers in one group."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis

from processors.devservices.redis_server import RedisServer
from processors.devservices.worker_process import WorkerProcess
from processors.kafka import clients
from processors.replay.driver import ReplayDriver
from processors.settings import Settings
from processors.state.keys import KeySchema
from tests.worker.factories import batch_envelope, metadata_event
from tests.worker.harness import isolated_settings, read_topic

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def produce(settings: Settings, messages: list[tuple[bytes, bytes]], compression: str = "none"
            ) -> list[tuple[int, int]]:
    producer = clients.producer(settings.kafka, {"message.max.bytes": 8_000_000,
                                                 "partitioner": "murmur2_random", "compression.type": compression})
    # placements by message index: delivery reports need not arrive in produce order
    placed: dict[int, tuple[int, int]] = {}

    def delivered(index: int) -> Callable[[Any, Any], None]:
        def record(error: Any, message: Any) -> None:
            if error is None:
                placed[index] = (message.partition(), message.offset())
        return record

    for index, (key, value) in enumerate(messages):
        producer.produce(settings.topic_metadata, key=key, value=value, on_delivery=delivered(index))
    assert producer.flush(30) == 0
    assert sorted(placed) == list(range(len(messages)))
    return [placed[i] for i in range(len(messages))]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling a condition


def processed(settings: Settings, placed: list[tuple[int, int]]) -> Callable[[], bool]:
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySchema(settings.key_prefix)

    def check() -> bool:
        try:
            marks = client.hgetall(keys.progress)
        except redis.RedisError:
            return False
        return all(int(marks.get(f"{settings.topic_metadata}:{p}".encode(), -1)) >= o for p, o in placed)
    return check


def test_poison_input_is_dead_lettered_and_the_worker_carries_on(settings: Settings, worker: WorkerProcess) -> None:
    good = metadata_event("good-1", T0, server="ex01.contoso.com", build="15.1.2507.39")
    wrong_types = dict(good, event_id="bad-types", message={"id": None, "size": "big", "recipients": 1})
    huge = dict(good, event_id="huge", headers=[["Received", "x" * 5_000_000]])
    many_hops = dict(good, event_id="many",
                     headers=[["Received", f"from a{i} by b{i} with SMTP"] for i in range(10_000)])
    mixed_batch = batch_envelope("contoso/ex01.contoso.com", [dict(good, event_id="in-batch-ok"),
                                                                dict(good, event_id="in-batch-bad", tenant_id="")])
    poison = [b"{not json", orjson.dumps(wrong_types), orjson.dumps(huge), orjson.dumps(many_hops),
              orjson.dumps({"schema": "patchgate.metadata/9"}), orjson.dumps(mixed_batch)]
    placed = produce(settings, [(b"contoso/ex01.contoso.com", value) for value in poison])
    placed += produce(settings, [(b"contoso/ex01.contoso.com", orjson.dumps(good))])
    wait_for(processed(settings, placed), "the poison and the good event to be processed")

    letters = [value for _, value in read_topic(settings.kafka_bootstrap, settings.topic_deadletter)]
    reasons = {letter["source"]["offset"]: letter for letter in letters}
    assert len(letters) == 6
    assert sorted(reasons) == sorted(offset for _, offset in placed[:6])  # each letter names its own offset
    by_reason = sorted(letter["reason"].split(":")[0] + ":" + (letter["path"] or "") for letter in letters)
    assert by_reason == sorted([
        "invalid JSON:", "$.message.size:$.message.size", "$.headers[0][1]:$.headers[0][1]", "$.headers:$.headers",
        "unknown schema:$.schema", "$.records[1].tenant_id:$.records[1].tenant_id",
    ])
    huge_letter = next(letter for letter in letters if letter["path"] == "$.headers[0][1]")
    assert huge_letter["original_size"] > 5_000_000 and huge_letter["original_truncated_at"] == 256 * 1024
    batch_letter = next(letter for letter in letters if letter["path"] == "$.records[1].tenant_id")
    assert batch_letter["source"]["record_index"] == 1
    assert base64.b64decode(reasons[placed[0][1]]["original"]) == b"{not json"

    # the good records (alone and inside the mixed batch) were processed: a verdict exists
    verdicts = [value for _, value in read_topic(settings.kafka_bootstrap, settings.topic_verdicts)]
    assert [v["server_key"] for v in verdicts] == ["contoso/ex01.contoso.com"]
    client = redis.Redis.from_url(settings.redis_url)
    day = KeySchema(settings.key_prefix).server_day_hll("contoso/ex01.contoso.com", T0.date().isoformat())
    assert client.pfcount(day) == 2  # good-1 and in-batch-ok


def test_compressed_input_is_processed(settings: Settings, worker: WorkerProcess) -> None:
    # every codec an edge's librdkafka may use: a missing one would crash the Faust fetcher
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySchema(settings.key_prefix)
    for round_, codec in enumerate(["lz4", "zstd", "snappy", "gzip"]):
        at = T0 + timedelta(days=round_)  # a day per codec: each day's count stands on its own
        placed = produce(settings, [(b"contoso/ex01.contoso.com", orjson.dumps(metadata_event(f"{codec}-{i}", at)))
                                    for i in range(5)], compression=codec)
        wait_for(processed(settings, placed), f"{codec}-compressed events")
        assert client.pfcount(keys.server_day_hll("contoso/ex01.contoso.com", at.date().isoformat())) == 5


def test_redis_outage_stops_processing_and_loses_nothing(kafka_bootstrap: str, unique_name: Callable[[str], str]
                                                         ) -> None:
    own_redis = RedisServer()
    own_redis.start()
    settings = isolated_settings(kafka_bootstrap, own_redis.url, unique_name)
    worker = WorkerProcess(settings)
    worker.start()
    try:
        first = produce(settings, [(b"contoso/ex01.contoso.com", orjson.dumps(metadata_event("before", T0)))])
        wait_for(processed(settings, first), "the first event")
        own_redis.stop()
        during = produce(settings, [(f"contoso/ex{i}.contoso.com".encode(), orjson.dumps(metadata_event(
            f"during-{i}", T0 + timedelta(minutes=i), server=f"ex{i}.contoso.com"))) for i in range(20)])
        own_redis.start()  # same port, empty (no persistence): the worker must redo its batch
        wait_for(processed(settings, during), "the events sent during the outage", timeout=90)
        client = redis.Redis.from_url(settings.redis_url)
        keys = KeySchema(settings.key_prefix)
        counts = [client.pfcount(keys.server_day_hll(f"contoso/ex{i}.contoso.com", T0.date().isoformat()))
                  for i in range(20)]
        assert counts == [1] * 20
    finally:
        worker.stop()
        own_redis.close()


def test_two_workers_share_partitions_and_one_takes_over(settings: Settings) -> None:
    first, second = WorkerProcess(settings, name="worker-a"), WorkerProcess(settings, name="worker-b")
    first.start()
    second.start()
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySchema(settings.key_prefix)
    try:
        def owners() -> set[str]:
            marks: dict[bytes, bytes] = client.hgetall(keys.progress)  # type: ignore[assignment]
            return {v.decode() for k, v in marks.items() if k.startswith(b"owner:")}

        def send(round_: int) -> list[tuple[int, int]]:
            return produce(settings, [(f"contoso/ex{i}.contoso.com".encode(), orjson.dumps(metadata_event(
                f"r{round_}-{i}", T0 + timedelta(minutes=round_), server=f"ex{i}.contoso.com"))) for i in range(64)])

        # the second worker may join after the first formed the group (Apache Kafka does not wait):
        # send rounds until both have processed partitions of the group
        deadline = time.monotonic() + 120
        round_ = 0
        while len(owners()) < 2:
            assert time.monotonic() < deadline, "the second worker never got partitions"
            placed = send(round_)
            assert {p for p, _ in placed} == set(range(8))
            wait_for(processed(settings, placed), f"round {round_}", 120)
            round_ += 1
        wait_for(processed(settings, send(round_)), "a round with both workers", 60)
        first.kill()
        client.delete(keys.progress)
        placed = send(round_ + 1)
        wait_for(processed(settings, placed), "the survivor to take over every partition", timeout=120)
        survivor = {o for o in owners()}
        assert len(survivor) == 1 and str(second.pid) in next(iter(survivor))
        # the survivor processed the last round for every server (exact) ...
        last = (T0 + timedelta(minutes=round_ + 1)).timestamp()
        assert [float(client.hget(keys.server(f"contoso/ex{i}.contoso.com"), "last_seen") or 0) for i in range(64)] \
            == [last] * 64
        # ... and nothing was counted twice (HyperLogLog: redelivered ids do not add; with many rounds
        # two ids of one server can share a register, so the estimate may be one lower, never higher)
        counts = [client.pfcount(keys.server_day_hll(f"contoso/ex{i}.contoso.com", T0.date().isoformat()))
                  for i in range(64)]
        assert all(round_ + 1 <= count <= round_ + 2 for count in counts), counts
    finally:
        first.stop()
        second.stop()


def test_pause_command_cli_path_and_quota(settings: Settings, worker: WorkerProcess) -> None:
    driver = ReplayDriver(settings)
    from processors.kafka.commands import pause_command

    for days in (60, 40):
        command = pause_command("contoso", days, False, "test", at=T0)
        driver.send([(settings.topic_commands, b"contoso", orjson.dumps(command))])
    notices = [v for _, v in read_topic(settings.kafka_bootstrap, settings.topic_notifications)]
    assert [n["kind"] for n in notices] == ["pause_started", "pause_refused"]
    assert "30 days are left this year" in notices[1]["text"]
    driver.close()


def test_worker_exposes_prometheus_metrics(kafka_bootstrap: str, redis_url: str,
                                           unique_name: Callable[[str], str]) -> None:
    import urllib.request

    from processors.devservices.base import free_port

    port = free_port()
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name, metrics_port=port, lag_interval_s=1)
    worker = WorkerProcess(settings)
    worker.start()

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return str(response.read().decode())
    try:
        placed = produce(settings, [(b"contoso/ex01.contoso.com", orjson.dumps(metadata_event("m-1", T0))),
                                    (b"contoso/ex01.contoso.com", b"{broken")])
        wait_for(processed(settings, placed), "the events")
        # the lag of every partition is measured; once the offsets are committed it is 0
        lag_lines = [f'patchgate_consumer_lag{{partition="{p}",topic="{settings.topic_metadata}"}} 0.0'
                     for p in range(settings.metadata_partitions)]
        wait_for(lambda: all(line in scrape() for line in lag_lines), "the consumer lag gauge at 0")
        text = scrape()
        assert f'patchgate_events_in_total{{topic="{settings.topic_metadata}"}} 2.0' in text
        assert 'patchgate_deadletter_total{reason="invalid_json"} 1.0' in text
        assert 'patchgate_classifications_total{status="unsupported"} 1.0' in text
        assert 'patchgate_verdicts_total{action="report"} 1.0' in text
        assert "patchgate_redis_seconds_count" in text
    finally:
        worker.stop()
