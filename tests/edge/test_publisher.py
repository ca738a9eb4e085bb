"""Metadata records and the publisher: header caps, schema conformance, batching, broker down."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from edge.publisher import MetadataPublisher, build_metadata_record, cap_headers
from processors.devservices import free_port
from processors.events.metadata import MetadataRecord
from tests.edge.helpers import exchange_headers
from tests.edge.kafka_helpers import create_topic, read_all

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "metadata.v1.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)


def record(i: int = 0, headers: list[tuple[str, str]] | None = None, **kw: Any) -> MetadataRecord:
    return build_metadata_record(
        edge="edge-1", tenant_id="contoso", connector_id="onprem", connector_type="OnPremises",
        client_ip="192.0.2.10", helo="ex01.contoso.com", headers=headers or exchange_headers(),
        queue_id=f"Q{i}", ptr="ex01.contoso.com",
        tls={"protocol": "TLSv1.2", "cipher": "ECDHE-RSA-AES256-GCM-SHA384", "cert_subject": None},
        size=1234, recipients=2, observed_at=datetime(2026, 11, 28, 10, 0, tzinfo=UTC), **kw)


def test_record_conforms_to_schema() -> None:
    r = record()
    VALIDATOR.validate(r)
    assert r["observed_at"] == "2026-11-28T10:00:00.000Z"
    assert r["message"] == {"id": "<abc@contoso.com>", "size": 1234, "recipients": 2}
    assert "headers_truncated" not in r


def test_header_caps_recorded() -> None:
    many = [("Received", f"from a{i} by b{i} with SMTP id {i}") for i in range(80)]
    big = [("X-Big", "x" * 30_000), ("X-Big2", "y" * 30_000), ("X-Big3", "z" * 30_000)]
    r = record(headers=many + big + [("X-MS-Exchange-Organization-AuthAs", "Internal")])
    VALIDATOR.validate(r)
    names = [h[0] for h in r["headers"]]
    assert names.count("Received") == 50
    assert names[-1] == "X-MS-Exchange-Organization-AuthAs"  # small headers after the cap still fit
    t = r["headers_truncated"]
    assert t["dropped_headers"] == 31
    assert "more than 50 Received headers" in t["reason"] and "65536 bytes" in t["reason"]
    assert sum(len(n) + len(v) for n, v in r["headers"]) <= 65536


def test_invalid_utf8_header_bytes_become_replacement_chars() -> None:
    kept, _ = cap_headers([("Subject", "caf\udce9")])
    assert kept == [["Subject", "caf\ufffd"]]
    orjson.dumps(kept)


def test_drops_are_counted_when_broker_is_down(caplog: pytest.LogCaptureFixture) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens here
    pub = MetadataPublisher(dead, max_buffer=50, linger=0.01,
                            producer_config={"queue.buffering.max.messages": 5, "message.timeout.ms": 60_000})
    pub.start()
    try:
        started = time.perf_counter()
        results = [pub.publish(f"contoso/ex{i % 7}.contoso.com", record(i)) for i in range(2000)]
        elapsed = time.perf_counter() - started
    finally:
        pub.stop(timeout=0.5)
    assert elapsed < 2.0, "publish() must never block on the broker"
    assert results.count(False) == pub.metrics.records_dropped_buffer_full > 1000
    assert "metadata buffer full" in caplog.text
    m = pub.metrics
    accounted = m.records_delivered + m.records_delivery_failed + m.records_dropped_at_stop
    assert m.records_accepted == results.count(True)
    assert accounted <= m.records_accepted


@pytest.mark.integration
def test_batches_per_server_key_arrive(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("metadata")
    create_topic(kafka_bootstrap, topic, partitions=3)
    pub = MetadataPublisher(kafka_bootstrap, topic=topic, batch_records=10, linger=0.02)
    pub.start()
    try:
        keys = ["contoso/ex01.contoso.com", "contoso/ex02.contoso.com", "fabrikam/mail.fabrikam.com"]
        for i in range(45):
            assert pub.publish(keys[i % 3], record(i))
        assert pub.flush(20) == 0
    finally:
        pub.stop()
    assert pub.metrics.records_delivered == 45
    messages = read_all(kafka_bootstrap, topic, expected=pub.metrics.batches_produced)
    total = 0
    seen_ids: set[str] = set()
    for key, value in messages:
        assert value is not None
        env = orjson.loads(value)
        VALIDATOR.validate(env)
        assert env["schema"] == "patchgate.metadata-batch/1"
        assert key == env["server_key"].encode()
        assert 1 <= len(env["records"]) <= 10
        total += len(env["records"])
        seen_ids.update(r["event_id"] for r in env["records"])
    assert total == 45 and len(seen_ids) == 45
