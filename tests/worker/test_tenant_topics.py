"""The per-tenant topic mode on the real worker and broker: the topic names the tenant; a key or record
naming another tenant on it is dead-lettered; each tenant's verdicts go to its own verdicts topic only;
a tenant topic created while the worker runs is picked up, its verdicts topic created if missing, and its
records are the group's lag until then."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from processors.devservices.base import free_port
from processors.devservices.worker_process import WorkerProcess
from processors.kafka import clients
from processors.kafka.topics import ensure_tenant_topics, metadata_spec, tenant_topics
from processors.settings import Settings
from processors.state.keys import KeySchema
from tests.worker.factories import metadata_event
from tests.worker.harness import isolated_settings, read_topic

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


@pytest.fixture
def per_tenant(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> Iterator[Settings]:
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name, metadata_topic_mode="per-tenant",
                                 metrics_port=free_port(), lag_interval_s=1)
    ensure_tenant_topics(settings, ["contoso", "fabrikam"])
    process = WorkerProcess(settings)
    process.start()
    yield settings
    process.stop()


def produce_to(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]) -> list[tuple[int, int]]:
    producer = clients.producer(settings.kafka, {"partitioner": "murmur2_random"})
    placed: list[tuple[int, int]] = []

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        placed.append((message.partition(), message.offset()))

    for key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert len(placed) == len(messages)
    return placed


def wait_processed(settings: Settings, topic: str, placed: list[tuple[int, int]], timeout: float = 60.0) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    progress = KeySchema(settings.key_prefix).progress
    deadline = time.monotonic() + timeout
    while True:
        marks = client.hgetall(progress)
        if all(int(marks.get(f"{topic}:{p}".encode(), -1)) >= o for p, o in placed):
            return
        assert time.monotonic() < deadline, f"timed out waiting for {topic} {placed}"
        time.sleep(0.1)  # polling a condition


def test_the_topic_names_the_tenant_and_a_foreign_key_on_it_is_dead_lettered(per_tenant: Settings) -> None:
    settings = per_tenant
    contoso_topic = settings.tenant_metadata_topic("contoso")
    assert tenant_topics(settings) == sorted([contoso_topic, settings.tenant_metadata_topic("fabrikam")])
    placed = produce_to(settings, contoso_topic, [
        (b"contoso/ex01.contoso.com", orjson.dumps(metadata_event("own-1", T0))),
        # a contoso edge writing fabrikam's server under fabrikam's key: the topic says contoso
        (b"fabrikam/ex09.fabrikam.com", orjson.dumps(metadata_event("forged-1", T0, tenant="fabrikam",
                                                                     server="ex09.fabrikam.com"))),
        # ... or fabrikam's record under a contoso key
        (b"contoso/ex09.fabrikam.com", orjson.dumps(metadata_event("forged-2", T0, tenant="fabrikam",
                                                                    server="ex09.fabrikam.com"))),
    ])
    shared = produce_to(settings, settings.topic_metadata, [
        (b"contoso/ex01.contoso.com", orjson.dumps(metadata_event("shared-1", T0)))])
    wait_processed(settings, contoso_topic, placed)
    wait_processed(settings, settings.topic_metadata, shared)

    letters = [value for _, value in read_topic(settings.kafka_bootstrap, settings.topic_deadletter)]
    reasons = sorted((letter["source"]["topic"], letter["reason"].split(":")[0]) for letter in letters)
    assert reasons == sorted([(contoso_topic, "tenant mismatch"), (contoso_topic, "tenant mismatch"),
                              (settings.topic_metadata, "topic")])
    assert all("'fabrikam'" in letter["reason"] and "'contoso'" in letter["reason"]
               for letter in letters if letter["source"]["topic"] == contoso_topic)
    assert tenant_verdicts(settings) == {"contoso": ["contoso/ex01.contoso.com"], "fabrikam": []}
    assert read_topic(settings.kafka_bootstrap, settings.topic_verdicts) == []  # the shared one: nothing
    client = redis.Redis.from_url(settings.redis_url)
    assert client.smembers(KeySchema(settings.key_prefix).tenants) == {b"contoso"}


def tenant_verdicts(settings: Settings, tenants: tuple[str, ...] = ("contoso", "fabrikam")) -> dict[str, list[str]]:
    """The server keys on each tenant's verdicts topic."""
    return {tenant: [value["server_key"] for _, value in read_topic(settings.kafka_bootstrap,
                                                                      settings.tenant_verdicts_topic(tenant))]
            for tenant in tenants}


def scraped(settings: Settings, name: str, labels: dict[str, str]) -> float | None:
    """One sample of the worker's /metrics (None: no such series)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def wait_scraped(settings: Settings, name: str, labels: dict[str, str], value: float | None,
                 timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := scraped(settings, name, labels)) != value:
        assert time.monotonic() < deadline, f"{name}{labels} is {seen}, not {value}"
        time.sleep(0.2)  # polling the worker's gauge (measured every second)


def test_a_tenant_topic_created_while_the_worker_runs_shows_as_lag_then_is_consumed(per_tenant: Settings) -> None:
    settings = per_tenant
    contoso_topic = settings.tenant_metadata_topic("contoso")
    first = produce_to(settings, contoso_topic, [(b"contoso/ex01.contoso.com",
                                                  orjson.dumps(metadata_event("own-1", T0)))])
    wait_processed(settings, contoso_topic, first)  # the worker is up and subscribed
    # the operator's own tooling made the metadata topic alone: the worker creates the verdicts topic
    topic = settings.tenant_metadata_topic("northwind")
    admin = clients.admin(settings.kafka)
    admin.create_topics([metadata_spec(settings, topic).new_topic()])[topic].result(30)
    assert settings.tenant_verdicts_topic("northwind") not in admin.list_topics(timeout=10).topics
    placed = produce_to(settings, topic, [(b"northwind/ex01.northwind.com", orjson.dumps(metadata_event(
        "nw-1", T0, tenant="northwind", server="ex01.northwind.com")))])
    # before the worker consumes it (it looks for new topics every 30 s; Faust resubscribes 45 s after
    # it is asked to) its unread record is the group's lag, which the alerts see
    tenants_lag = {"topic": f"{settings.topic_metadata}.*", "partition": "all"}
    wait_scraped(settings, "patchgate_tenant_topic_lag", {"topic": topic}, 1.0)
    assert (scraped(settings, "patchgate_consumer_lag", tenants_lag) or 0) >= 1
    wait_processed(settings, topic, placed, timeout=180)
    wait_scraped(settings, "patchgate_consumer_lag", tenants_lag, 0.0)  # committed: no lag left
    assert scraped(settings, "patchgate_tenant_topic_lag", {"topic": topic}) is None
    assert tenant_verdicts(settings, ("contoso", "northwind")) == {
        "contoso": ["contoso/ex01.contoso.com"], "northwind": ["northwind/ex01.northwind.com"]}
