"""VerdictCache against a real Kafka-protocol broker (the session's Tansu unless configured otherwise)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from edge.verdict_cache import VerdictCache
from edge.verdicts import ACCEPT, BLOCK, THROTTLE
from tests.edge.helpers import T0, verdict, verdict_bytes
from tests.edge.kafka_helpers import create_topic, produce

pytestmark = pytest.mark.integration

NOW = T0 + 60  # minute 1 of the hour


def test_reads_topic_from_beginning_then_follows(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("verdicts")
    create_topic(kafka_bootstrap, topic, partitions=3, compact=True)
    produce(kafka_bootstrap, topic, [
        ("contoso/ex01.contoso.com", verdict_bytes(server_key="contoso/ex01.contoso.com", sequence=5, throttle=60)),
        # Out of order: an older sequence arriving later must not win.
        ("contoso/ex01.contoso.com", verdict_bytes(server_key="contoso/ex01.contoso.com", sequence=3, stage=8,
                                                   throttle=0, block=60)),
        ("contoso/ex02.contoso.com", verdict_bytes(server_key="contoso/ex02.contoso.com", stage=8, throttle=0,
                                                   block=60, client_ips=["192.0.2.22"])),
        ("contoso/ex03.contoso.com", verdict_bytes(server_key="contoso/ex03.contoso.com", throttle=60)),
        ("contoso/ex03.contoso.com", None),  # tombstone
        ("contoso/ex04.contoso.com", b"{this is not json"),
    ])
    cache = VerdictCache(kafka_bootstrap, topic=topic)
    assert cache.decide("contoso/ex01.contoso.com", NOW).reason == "fail-open-not-caught-up"
    cache.start()
    try:
        assert cache.wait_caught_up(20), "cache did not catch up"
        assert cache.decide("contoso/ex01.contoso.com", NOW).action == THROTTLE
        assert cache.decide("contoso/ex02.contoso.com", NOW).action == BLOCK
        assert cache.decide("contoso/ex03.contoso.com", NOW).reason == "no-verdict"
        assert cache.server_key_for_ip("192.0.2.22") == "contoso/ex02.contoso.com"
        m = cache.metrics
        assert (m.verdicts_applied, m.verdicts_stale_ignored, m.tombstones_applied, m.bad_records) == (3, 1, 1, 1)
        assert m.decisions_fail_open == 1

        # Following: a newer verdict replaces, a tombstone removes.
        produce(kafka_bootstrap, topic, [
            ("contoso/ex01.contoso.com", verdict_bytes(server_key="contoso/ex01.contoso.com", sequence=6, stage=8,
                                                       throttle=0, block=60)),
            ("contoso/ex02.contoso.com", None),
        ])
        assert cache.wait_until(lambda: cache.metrics.tombstones_applied == 2, 20)
        assert cache.decide("contoso/ex01.contoso.com", NOW).action == BLOCK
        assert cache.decide("contoso/ex02.contoso.com", NOW).action == ACCEPT
        snapshot = cache.snapshot()
        assert [r["server_key"] for r in snapshot] == ["contoso/ex01.contoso.com"]
        assert snapshot[0]["sequence"] == 6
    finally:
        cache.stop()


def test_empty_topic_is_caught_up(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("verdicts-empty")
    create_topic(kafka_bootstrap, topic, partitions=2, compact=True)
    with VerdictCache(kafka_bootstrap, topic=topic) as cache:
        assert cache.wait_caught_up(20)
        assert len(cache) == 0
        produce(kafka_bootstrap, topic, [("t/a", orjson.dumps(verdict("t/a", throttle=60)))])
        assert cache.wait_until(lambda: len(cache) == 1, 20)
        assert cache.decide("t/a", NOW).action == THROTTLE


def test_many_verdicts_catch_up(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("verdicts-many")
    create_topic(kafka_bootstrap, topic, partitions=4, compact=True)
    keys = [f"t/ex{i:05d}.example.com" for i in range(2000)]
    produce(kafka_bootstrap, topic, [(k, verdict_bytes(server_key=k, throttle=60)) for k in keys])
    with VerdictCache(kafka_bootstrap, topic=topic) as cache:
        assert cache.wait_caught_up(30)
        # Tansu can under-report end offsets right after producing (seen in these tests): allow the tail
        # to arrive after caught_up, but it must arrive.
        assert cache.wait_until(lambda: len(cache) == 2000, 20)
        assert all(cache.decide(k, NOW).action == THROTTLE for k in keys)


def test_missing_topic_counts_as_empty_and_is_picked_up_later(kafka_bootstrap: str,
                                                              unique_name: Callable[[str], str]) -> None:
    topic = unique_name("verdicts-later")
    with VerdictCache(kafka_bootstrap, topic=topic, metadata_interval=0.2) as cache:
        assert cache.wait_caught_up(20)
        create_topic(kafka_bootstrap, topic, partitions=1, compact=True)
        produce(kafka_bootstrap, topic, [("t/a", orjson.dumps(verdict("t/a", throttle=60)))])
        assert cache.wait_until(lambda: len(cache) == 1, 20)
        assert cache.decide("t/a", NOW).action == THROTTLE


def test_cache_dump_cli(kafka_bootstrap: str, unique_name: Callable[[str], str],
                        capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import main

    topic = unique_name("verdicts-dump")
    create_topic(kafka_bootstrap, topic, partitions=1, compact=True)
    produce(kafka_bootstrap, topic, [("t/a", verdict_bytes(server_key="t/a", stage=8, throttle=0, block=60)),
                                     ("t/b", verdict_bytes(server_key="t/b", throttle=5, offset=30))])
    rc = main(["edge", "cache-dump", "--bootstrap", kafka_bootstrap, "--verdicts-topic", topic,
               "--decide-at", str(NOW), "--catchup-timeout", "20"])
    out = capsys.readouterr()
    assert rc == 0
    lines = [orjson.loads(line) for line in out.out.splitlines()]
    assert [(x["server_key"], x["decision"]) for x in lines] == [("t/a", "block"), ("t/b", "accept")]
    assert orjson.loads(out.err.splitlines()[-1])["verdicts"] == 2


def test_verdicts_with_a_bad_client_ip_keep_enforcing(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    """A server whose state carries a client IP in MTA notation or garbage: every verdict up to stage
    8 still applies for its server key (the bad entry alone is skipped and counted)."""
    topic = unique_name("verdicts-bad-ip")
    create_topic(kafka_bootstrap, topic, partitions=1, compact=True)
    key = "contoso/ex01.contoso.com"
    produce(kafka_bootstrap, topic, [
        (key, verdict_bytes(server_key=key, sequence=1, stage=4, throttle=60, client_ips=["[10.0.0.5]"])),
        (key, verdict_bytes(server_key=key, sequence=2, stage=8, throttle=0, block=60,
                            client_ips=["10.0.0.300", "192.0.2.10"])),
    ])
    with VerdictCache(kafka_bootstrap, topic=topic) as cache:
        assert cache.wait_until(lambda: cache.caught_up and cache.metrics.verdicts_applied == 2, 20)
        assert cache.decide(key, NOW).action == BLOCK
        assert cache.server_key_for_ip("192.0.2.10") == key
        assert (cache.metrics.verdicts_applied, cache.metrics.bad_records) == (2, 0)
        assert cache.metrics.verdict_fields_skipped == 1  # '10.0.0.300'; '[10.0.0.5]' is normalised
