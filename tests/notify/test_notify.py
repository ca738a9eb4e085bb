"""Webhook delivery against a real broker, a real Redis and local HTTP receivers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from confluent_kafka import Consumer, Producer, TopicPartition

from processors.contracts import contracts
from processors.notify.config import DeliveryPolicy, NotifyConfigError, notify_config_from_mapping
from processors.notify.delivery import delivered_key
from processors.notify.service import NotifyService
from tests.api.helpers import create_topic, read_topic

SECRET = "contoso-webhook-secret-0123456789"


def notification(tenant: str, n: int) -> dict[str, Any]:
    return {
        "schema": "patchgate.notification/1",
        "notification_id": f"{tenant}/ex0{n}.{tenant}.test|detected|2026-11-0{n}",
        "tenant_id": tenant, "server": f"ex0{n}.{tenant}.test", "server_key": f"{tenant}/ex0{n}.{tenant}.test",
        "kind": "detected", "at": f"2026-11-0{n}T08:00:00Z", "stage": 1, "next_stage_at": "2026-12-01T00:00:00Z",
        "build": "15.1.2507.39",
        "recommended_builds": [{"short": "15.1.2507.61", "long": "15.01.2507.061", "name": "Exchange Server 2016"}],
        "text": f"ex0{n}.{tenant}.test was detected as behind.",
    }


class Receivers:
    """Local webhook receivers: /flaky fails the first two attempts, /down always fails, /gone is 410."""

    def __init__(self) -> None:
        self.requests: dict[str, list[tuple[dict[str, str], bytes]]] = {"flaky": [], "down": [], "gone": []}
        self.app = web.Application()
        self.app.router.add_post("/{name}", self.handle)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        self.requests[name].append((dict(request.headers), body))
        if name == "flaky":
            return web.Response(status=503 if len(self.requests[name]) <= 2 else 204)
        return web.Response(status=500 if name == "down" else 410, text="no")

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(15) == 0


@pytest.mark.integration
def test_retries_signature_idempotence_and_dead_letters(kafka_bootstrap: str, redis_url: str,
                                                        unique_name: Callable[[str], str]) -> None:
    topic, deadletters, prefix, group = (unique_name("notifications"), unique_name("deadletter"),
                                         unique_name("pg"), unique_name("notify"))
    create_topic(kafka_bootstrap, topic, partitions=2)
    create_topic(kafka_bootstrap, deadletters, partitions=1)
    n_contoso, n_fabrikam, n_northwind, n_gone = (notification("contoso", 1), notification("fabrikam", 2),
                                                  notification("northwind", 3), notification("gone", 4))

    async def scenario() -> tuple[Receivers, NotifyService, list[Any]]:
        receivers = Receivers()
        await receivers.start()
        config = notify_config_from_mapping({
            "delivery": {"max_attempts": 3, "initial_backoff_s": 0.05, "max_backoff_s": 0.2, "timeout_s": 5},
            "tenants": {"contoso": {"url": receivers.base + "/flaky", "secret": SECRET},
                        "fabrikam": {"url": receivers.base + "/down"},
                        "gone": {"url": receivers.base + "/gone"}},
        })
        service = NotifyService(bootstrap=kafka_bootstrap, notifications_topic=topic, deadletter_topic=deadletters,
                                redis_url=redis_url, key_prefix=prefix, config=config, group=group)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            produce(kafka_bootstrap, topic, [
                ("contoso", orjson.dumps(n_contoso)), ("fabrikam", orjson.dumps(n_fabrikam)),
                ("northwind", orjson.dumps(n_northwind)), ("gone", orjson.dumps(n_gone)),
                ("contoso", b'{"schema": "patchgate.notification/1", "broken'),
            ])
            await until(lambda: sum(service.stats.outcomes.values()) >= 5, 60, "the first five records")
            # the same notification again (e.g. the worker re-published an outbox): not posted twice
            produce(kafka_bootstrap, topic, [("contoso", orjson.dumps(n_contoso))])
            await until(lambda: service.stats.outcomes.get("duplicate", 0) >= 1, 30, "the duplicate")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await receivers.runner.cleanup()
        client = aioredis.Redis.from_url(redis_url)
        try:
            delivered = await client.zrange(delivered_key(prefix, "contoso"), 0, -1)
            ttl = await client.ttl(delivered_key(prefix, "contoso"))
        finally:
            await client.aclose()
        assert 0 < ttl <= DeliveryPolicy().dedupe_ttl_s
        return receivers, service, delivered

    receivers, service, delivered = asyncio.run(scenario())
    assert service.stats.outcomes == {"delivered": 1, "dead_letter": 3, "no_webhook": 1, "duplicate": 1}

    # contoso: failed twice (503), delivered on the third attempt, signed, and remembered in Redis
    flaky = receivers.requests["flaky"]
    assert len(flaky) == 3
    assert [h["X-Patchgate-Delivery-Attempt"] for h, _ in flaky] == ["1", "2", "3"]
    headers, body = flaky[-1]
    assert orjson.loads(body) == n_contoso
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Patchgate-Signature"], expected)
    assert headers["X-Patchgate-Notification-Id"] == n_contoso["notification_id"]
    assert headers["Content-Type"] == "application/json"
    assert delivered == [n_contoso["notification_id"].encode()]

    # fabrikam's receiver always fails: 3 attempts, unsigned (no secret), then a dead letter
    assert len(receivers.requests["down"]) == 3
    assert "X-Patchgate-Signature" not in receivers.requests["down"][0][0]
    # a 410 is permanent: one attempt only
    assert len(receivers.requests["gone"]) == 1

    records = read_topic(kafka_bootstrap, deadletters, lambda got: len(got) >= 3)
    assert len(records) == 3
    letters = {}
    for key, value in records:
        letter = orjson.loads(value or b"")
        contracts.deadletter(letter)
        assert letter["source"]["topic"] == topic
        assert base64.b64decode(letter["source"]["key"]) == key
        letters[key] = letter
    down = letters[b"fabrikam"]
    assert down["reason"] == "webhook delivery failed after 3 attempts; last error: HTTP 500"
    assert orjson.loads(base64.b64decode(down["original"])) == n_fabrikam
    assert letters[b"gone"]["reason"] == "webhook refused the notification permanently: HTTP 410"
    assert letters[b"contoso"]["reason"].startswith("invalid notification: not JSON")

    # every record's offset was committed: a restart does not deliver anything again
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1)]
    finally:
        consumer.close()
    assert [tp.offset for tp in committed] == ends
    assert sum(ends) == 6


def test_config_validation() -> None:
    config = notify_config_from_mapping({"tenants": {"*": {"url": "https://ops.example/hook"},
                                                     "contoso": {"url": "http://h.example/x", "secret": "s" * 16}}})
    assert config.webhook_for("contoso").url == "http://h.example/x"  # type: ignore[union-attr]
    assert config.webhook_for("other").url == "https://ops.example/hook"  # type: ignore[union-attr]
    assert "ssss" not in repr(config.webhook_for("contoso"))
    policy = DeliveryPolicy(initial_backoff_s=1, max_backoff_s=5)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    for document, message in [
        ({"tenants": {"contoso": {"url": "ftp://x"}}}, "http:// or https://"),
        ({"tenants": {"contoso": {"url": "https://x", "secret": "short"}}}, "at least 16"),
        ({"tenants": {"bad tenant": {"url": "https://x"}}}, "not a valid tenant id"),
        ({"delivery": {"max_attempts": 0}}, "max_attempts"),
        ({"delivery": {"retries": 3}}, "unknown key 'retries'"),
        ({"hooks": {}}, "unknown table 'hooks'"),
    ]:
        assert isinstance(document, dict)
        with pytest.raises(NotifyConfigError, match=message):
            notify_config_from_mapping(document)
