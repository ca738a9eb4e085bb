"""The worker's trust boundary, on the real worker, broker and Redis: the Kafka key decides the tenant,
every field that reaches state is validated, and a poison record is dead-lettered alone."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis

from processors.devservices.base import free_port
from processors.devservices.worker_process import WorkerProcess
from processors.settings import Settings
from processors.state.keys import KeySchema
from tests.worker.factories import batch_envelope, metadata_event
from tests.worker.harness import isolated_settings, read_topic
from tests.worker.test_failures import processed, produce, wait_for

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def observed(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], metrics_port: int
             ) -> Iterator[Settings]:
    """Isolated settings and a real worker exposing /metrics."""
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name, metrics_port=metrics_port)
    process = WorkerProcess(settings)
    process.start()
    yield settings
    process.stop()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    return [value for _, value in read_topic(settings.kafka_bootstrap, settings.topic_deadletter)]


def verdict_keys(settings: Settings) -> list[str]:
    return [value["server_key"] for _, value in read_topic(settings.kafka_bootstrap, settings.topic_verdicts)]


def test_a_record_naming_another_tenant_than_its_key_is_dead_lettered_and_writes_nothing(
        observed: Settings, metrics_port: int) -> None:
    settings = observed
    contoso = metadata_event("c-1", T0, tenant="contoso", server="ex01.contoso.com")
    foreign = metadata_event("f-1", T0, tenant="fabrikam", server="ex09.fabrikam.com")
    foreign_in_batch = metadata_event("f-2", T0, tenant="fabrikam", server="ex01.contoso.com")
    placed = produce(settings, [
        (b"contoso/ex01.contoso.com", orjson.dumps(foreign)),
        (b"contoso/ex01.contoso.com", orjson.dumps(batch_envelope("contoso/ex01.contoso.com", [
            dict(contoso, event_id="c-2"), foreign_in_batch]))),
        (b"contoso/ex01.contoso.com", orjson.dumps(contoso)),
    ])
    wait_for(processed(settings, placed), "the records to be processed")

    letters = dead_letters(settings)
    assert sorted((letter["source"]["record_index"] or -1, letter["reason"].split(":")[0]) for letter in letters) \
        == [(-1, "tenant mismatch"), (1, "tenant mismatch")]
    assert all("'fabrikam'" in letter["reason"] and "'contoso'" in letter["reason"] for letter in letters)
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySchema(settings.key_prefix)
    assert client.smembers(keys.tenants) == {b"contoso"}
    assert not client.exists(keys.server("fabrikam/ex09.fabrikam.com"), keys.server("fabrikam/ex01.contoso.com"),
                             keys.server("contoso/ex09.fabrikam.com"))
    day = keys.server_day_hll("contoso/ex01.contoso.com", T0.date().isoformat())
    assert client.pfcount(day) == 2  # c-1 and c-2; f-2 (same server, other tenant) was not counted
    assert verdict_keys(settings) == ["contoso/ex01.contoso.com"]
    assert 'patchgate_deadletter_total{reason="tenant_mismatch"} 2.0' in scrape(metrics_port)


def test_keys_and_envelopes_that_disagree_are_refused_and_a_renamed_server_is_counted(
        observed: Settings, metrics_port: int) -> None:
    settings = observed
    record = metadata_event("k-1", T0, server="ex02.contoso.com")
    placed = produce(settings, [
        (b"not-a-server-key", orjson.dumps(dict(record, event_id="k-bad"))),
        (b"contoso/ex02.contoso.com", orjson.dumps(batch_envelope("contoso/ex03.contoso.com",
                                                                  [dict(record, event_id="k-env")]))),
        # the edge named the server by an older catalog: kept under the server the headers name
        (b"contoso/old-name.contoso.com", orjson.dumps(record)),
    ])
    wait_for(processed(settings, placed), "the records to be processed")

    reasons = sorted(letter["reason"].split(":")[0] for letter in dead_letters(settings))
    assert reasons == ["key", "server key mismatch"]
    assert verdict_keys(settings) == ["contoso/ex02.contoso.com"]
    text = scrape(metrics_port)
    assert "patchgate_server_key_mismatch_total 1.0" in text
    assert 'patchgate_deadletter_total{reason="key"} 1.0' in text
    assert 'patchgate_deadletter_total{reason="server_key_mismatch"} 1.0' in text


def test_an_address_in_mta_notation_is_dead_lettered_and_never_reaches_state_or_verdicts(
        observed: Settings, metrics_port: int) -> None:
    settings = observed
    key = b"contoso/ex01.contoso.com"
    placed = produce(settings, [
        (key, orjson.dumps(metadata_event("ip-1", T0, ip="[10.0.0.5]"))),
        (key, orjson.dumps(metadata_event("ip-2", T0, ip="IPv6:2001:db8::5"))),
        (key, orjson.dumps(metadata_event("ip-3", T0, ip="2001:DB8::5"))),
        # a HELO that is no host name is context: dropped, the record kept
        (key, orjson.dumps(metadata_event("ip-4", T0 + timedelta(minutes=1), ip="10.0.0.5", helo="[10.0.0.5]"))),
    ])
    wait_for(processed(settings, placed), "the records to be processed")

    letters = dead_letters(settings)
    assert sorted(letter["path"] for letter in letters) == ["$.client.ip"] * 3
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySchema(settings.key_prefix)
    assert client.smembers(keys.server_ips("contoso/ex01.contoso.com")) == {b"10.0.0.5"}
    verdicts = [value for _, value in read_topic(settings.kafka_bootstrap, settings.topic_verdicts)]
    assert [v["server_key"] for v in verdicts] == ["contoso/ex01.contoso.com"]
    assert verdicts[0]["client_ips"] == ["10.0.0.5"]
    text = scrape(metrics_port)
    assert 'patchgate_deadletter_total{reason="contract"} 3.0' in text
    assert 'patchgate_context_dropped_total{field="helo"} 1.0' in text


def test_a_poison_record_is_dead_lettered_alone_and_its_neighbours_get_one_verdict_each(
        observed: Settings, metrics_port: int) -> None:
    settings = observed
    servers = [f"ex{i}.contoso.com" for i in range(1, 6)]
    events = [metadata_event(f"n-{i}", T0, server=server) for i, server in enumerate(servers)]
    events[2] = dict(events[2], observed_at="9999-12-31T23:59:59Z")  # would overflow the stage arithmetic
    events[3] = dict(events[3], observed_at=(datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    # one partition, one batch: the poison sits between innocent records
    placed = produce(settings, [(b"contoso/ex1.contoso.com", orjson.dumps(batch_envelope(
        "contoso/ex1.contoso.com", events)))])
    wait_for(processed(settings, placed), "the batch to be processed")

    letters = dead_letters(settings)
    assert sorted((letter["source"]["record_index"], letter["reason"].split(":")[0]) for letter in letters) \
        == [(2, "$.records[2].observed_at"), (3, "event time")]
    assert sorted(verdict_keys(settings)) == sorted(f"contoso/{server}" for i, server in enumerate(servers)
                                                    if i not in (2, 3))
    text = scrape(metrics_port)
    assert 'patchgate_deadletter_total{reason="contract"} 1.0' in text
    assert 'patchgate_deadletter_total{reason="event_time"} 1.0' in text
