"""Supervised edge threads: an unexpected exception restarts the loop, is counted and shows in /metrics.

Unit tests for :class:`~edge.supervision.SupervisedThread`, then the publisher and the verdict
follower against the real broker with one injected failure each: the thread restarts, nothing
published or followed afterwards is lost, and the Prometheus view shows liveness and restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from edge.prometheus import EdgeCollector
from edge.publisher import MetadataPublisher
from edge.supervision import SupervisedThread
from edge.verdict_cache import VerdictCache
from edge.verdicts import THROTTLE, VerdictIndex
from tests.edge.helpers import T0, verdict_bytes
from tests.edge.kafka_helpers import create_topic, produce, read_all
from tests.edge.test_publisher import record

DEADLINE = 20.0


def test_a_failing_body_is_restarted_with_backoff_and_counted() -> None:
    stop = threading.Event()
    running = threading.Event()
    exits: list[bool] = []
    calls = 0

    def body() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError(f"failure {calls}")
        running.set()
        stop.wait()

    thread = SupervisedThread("t", body, stop, on_exit=lambda: exits.append(True), initial_backoff=0.01)
    assert not thread.alive
    thread.start()
    assert running.wait(DEADLINE)
    assert thread.alive and thread.restarts == 2
    stop.set()
    thread.join(DEADLINE)
    assert not thread.alive and exits == [True] and calls == 3


def test_stop_during_backoff_ends_the_thread() -> None:
    stop = threading.Event()
    failed = threading.Event()

    def body() -> None:
        failed.set()
        raise RuntimeError("always")

    thread = SupervisedThread("t", body, stop, initial_backoff=60.0)
    thread.start()
    assert failed.wait(DEADLINE)
    stop.set()
    thread.join(DEADLINE)
    assert not thread.alive and thread.restarts == 1


def fail_once(target: Any, name: str) -> Callable[[], int]:
    """Make ``target.name`` raise on its first call; returns a function counting the calls."""
    original = getattr(target, name)
    calls = 0

    def wrapper(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected failure")
        return original(*args)
    setattr(target, name, wrapper)
    return lambda: calls


def exported(collector: EdgeCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


@pytest.mark.integration
def test_publisher_thread_restarts_after_a_failure_and_publishes(kafka_bootstrap: str,
                                                                 unique_name: Callable[[str], str]) -> None:
    topic = unique_name("metadata")
    create_topic(kafka_bootstrap, topic, partitions=1)
    publisher = MetadataPublisher(kafka_bootstrap, topic=topic, linger=0.01)
    publisher.thread.initial_backoff = 0.01
    fail_once(publisher, "_flush_once")
    publisher.start()
    try:
        for i in range(5):
            assert publisher.publish("contoso/ex01.contoso.com", record(i))
        assert publisher.flush(DEADLINE) == 0
        assert publisher.thread.restarts == 1 and publisher.thread.alive
        text = exported(EdgeCollector(VerdictIndex(), {"publisher": publisher.metrics},
                                      {"publisher": publisher.thread}, topic="patchgate.verdicts"))
        assert 'patchgate_edge_thread_alive{thread="publisher"} 1.0' in text
        assert 'patchgate_edge_thread_restarts_total{thread="publisher"} 1.0' in text
    finally:
        publisher.stop(5.0)
    def records(got: list[tuple[Any, Any]]) -> int:
        return sum(len(orjson.loads(value)["records"]) for _, value in got)
    assert records(read_all(kafka_bootstrap, topic, until=lambda got: records(got) >= 5)) == 5
    assert publisher.metrics.records_delivered == 5


@pytest.mark.integration
def test_verdict_follower_restarts_after_a_failure_and_keeps_following(kafka_bootstrap: str,
                                                                       unique_name: Callable[[str], str]) -> None:
    topic = unique_name("verdicts")
    create_topic(kafka_bootstrap, topic, partitions=1, compact=True)
    key = "contoso/ex01.contoso.com"
    produce(kafka_bootstrap, topic, [(key, verdict_bytes(server_key=key, sequence=1, throttle=60))])
    cache = VerdictCache(kafka_bootstrap, topic=topic)
    cache.thread.initial_backoff = 0.01
    calls = fail_once(cache, "_apply_messages")
    cache.start()
    try:
        assert cache.wait_until(lambda: cache.caught_up and cache.get(key) is not None, DEADLINE)
        assert calls() >= 2 and cache.thread.restarts == 1 and cache.thread.alive
        assert cache.decide(key, T0 + 60).action == THROTTLE
        produce(kafka_bootstrap, topic, [(key, verdict_bytes(server_key=key, sequence=2, stage=8, throttle=0,
                                                             block=60))])
        def newest() -> int:
            held = cache.get(key)
            return held.sequence if held is not None else 0
        assert cache.wait_until(lambda: newest() == 2, DEADLINE)
    finally:
        cache.stop()
    assert not cache.thread.alive
