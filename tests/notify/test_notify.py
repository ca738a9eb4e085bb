"""Webhook delivery against a real broker, a real Redis and local HTTP receivers."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from confluent_kafka import TopicPartition
from standardwebhooks import Webhook, WebhookVerificationError

from processors.contracts import contracts
from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.notify.config import DeliveryPolicy, NotifyConfigError, notify_config_from_mapping
from processors.notify.delivery import DeliveredIds, SourceRecord, WebhookDeliverer, webhook_headers
from processors.notify.service import NotifyService
from processors.state.keys import KeySchema
from processors.state.store import StateStore
from tests.api.helpers import create_topic, read_topic

SECRET = "whsec_" + base64.b64encode(b"contoso-webhook-key-0123456789ab").decode()


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
    producer = clients.producer(KafkaConfig(bootstrap), {"linger.ms": 0})
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
    n_contoso["shadow"] = True  # a shadowed tenant's notification goes out as it is, saying so

    async def scenario() -> tuple[Receivers, NotifyService, list[Any]]:
        receivers = Receivers()
        await receivers.start()
        config = notify_config_from_mapping({
            "delivery": {"max_attempts": 3, "initial_backoff_s": 0.05, "max_backoff_s": 0.2, "timeout_s": 5},
            "tenants": {"contoso": {"url": receivers.base + "/flaky", "secret": SECRET},
                        "fabrikam": {"url": receivers.base + "/down"},
                        "gone": {"url": receivers.base + "/gone"}},
        })
        service = NotifyService(kafka=KafkaConfig(kafka_bootstrap), notifications_topic=topic,
                                deadletter_topic=deadletters, redis_url=redis_url, key_prefix=prefix,
                                config=config, group=group)
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
            delivered = await client.zrange(KeySchema(prefix).tenant_webhook_delivered("contoso"), 0, -1)
            ttl = await client.ttl(KeySchema(prefix).tenant_webhook_delivered("contoso"))
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
    # every attempt is signed the Standard Webhooks way: an independent implementation verifies it
    for headers, body in flaky:
        assert Webhook(SECRET).verify(body, headers) == n_contoso and n_contoso["shadow"] is True
        assert headers["webhook-id"] == n_contoso["notification_id"]  # the same id on every attempt
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 120
        assert "X-Patchgate-Signature" not in headers  # the replayable body-only signature is gone
    headers, body = flaky[-1]
    assert headers["Content-Type"] == "application/json"
    assert delivered == [n_contoso["notification_id"].encode()]

    # fabrikam's receiver always fails: 3 attempts, unsigned (no secret), then a dead letter
    assert len(receivers.requests["down"]) == 3
    unsigned = receivers.requests["down"][0][0]
    assert "webhook-signature" not in unsigned
    assert unsigned["webhook-id"] == n_fabrikam["notification_id"] and unsigned["webhook-timestamp"].isdigit()
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
    consumer = clients.consumer(KafkaConfig(kafka_bootstrap), {"group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1)]
    finally:
        consumer.close()
    assert [tp.offset for tp in committed] == ends
    assert sum(ends) == 6


def test_config_validation() -> None:
    config = notify_config_from_mapping({"tenants": {"*": {"url": "https://ops.example/hook"},
                                                     "contoso": {"url": "http://h.example/x", "secret": SECRET}}})
    assert config.webhook_for("contoso").url == "http://h.example/x"  # type: ignore[union-attr]
    assert config.webhook_for("other").url == "https://ops.example/hook"  # type: ignore[union-attr]
    assert SECRET[6:12] not in repr(config.webhook_for("contoso"))
    policy = DeliveryPolicy(initial_backoff_s=1, max_backoff_s=5)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    for document, message in [
        ({"tenants": {"contoso": {"url": "ftp://x"}}}, "http:// or https://"),
        ({"tenants": {"contoso": {"url": "https://x", "secret": "a-long-plain-shared-secret"}}},
         "must start with 'whsec_'.*os.urandom"),
        ({"tenants": {"contoso": {"url": "https://x", "secret": "whsec_not base64!"}}}, "standard base64"),
        ({"tenants": {"contoso": {"url": "https://x", "secret": "whsec_" + base64.b64encode(b"k" * 16).decode()}}},
         "24 to 64 random bytes, not 16"),
        ({"tenants": {"contoso": {"url": "https://x", "secret": 12345}}}, "must be a string"),
        ({"tenants": {"bad tenant": {"url": "https://x"}}}, "not a valid tenant id"),
        ({"tenants": {"contoso\n": {"url": "https://x"}}}, "not a valid tenant id"),
        ({"delivery": {"max_attempts": 0}}, "max_attempts"),
        ({"delivery": {"retries": 3}}, "unknown key 'retries'"),
        ({"hooks": {}}, "unknown table 'hooks'"),
    ]:
        assert isinstance(document, dict)
        with pytest.raises(NotifyConfigError, match=message):
            notify_config_from_mapping(document)


README = Path(__file__).resolve().parents[2] / "processors" / "notify" / "README.md"


def readme_receiver(secret: str, monkeypatch: pytest.MonkeyPatch,
                    handled: list[Any]) -> Callable[[bytes, dict[str, str]], int]:
    """The receiver example of processors/notify/README.md, executed as written."""
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block is not None, "the README lost its receiver example"
    monkeypatch.setenv("PATCHGATE_WEBHOOK_SECRET", secret)
    namespace: dict[str, Any] = {"handle": handled.append}
    exec(compile(block.group(1), str(README), "exec"), namespace)
    receive: Callable[[bytes, dict[str, str]], int] = namespace["receive"]
    return receive


class ReadmeReceiver:
    """An HTTP receiver answering what the README's example answers; keeps every request it got."""

    def __init__(self, receive: Callable[[bytes, dict[str, str]], int]) -> None:
        self.receive = receive
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        status = self.receive(body, headers)
        self.requests.append((headers, body, status))
        return web.Response(status=status)

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"


@pytest.mark.integration
def test_a_readme_receiver_rejects_replayed_and_stale_deliveries(redis_url: str, unique_name: Callable[[str], str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    handled: list[Any] = []
    receive = readme_receiver(SECRET, monkeypatch, handled)
    fresh, late = notification("contoso", 5), notification("contoso", 6)

    async def scenario() -> None:
        receiver = ReadmeReceiver(receive)
        await receiver.start()
        config = notify_config_from_mapping({"delivery": {"max_attempts": 2, "initial_backoff_s": 0.01},
                                             "tenants": {"contoso": {"url": receiver.url, "secret": SECRET}}})
        client = aioredis.Redis.from_url(redis_url)
        delivered = DeliveredIds(StateStore(client, KeySchema(unique_name("pg"))), 3600)
        delivered_late = DeliveredIds(StateStore(client, KeySchema(unique_name("pg"))), 3600)
        try:
            async with aiohttp.ClientSession() as session:
                deliverer = WebhookDeliverer(config, session, delivered)
                outcome = await deliverer.handle(SourceRecord("n", 0, 1, b"contoso", orjson.dumps(fresh)))
                assert outcome.kind == "delivered" and handled == [fresh]
                headers, body, _ = receiver.requests[-1]
                assert Webhook(SECRET).verify(body, headers) == fresh  # the library agrees

                # the captured request sent again as it was: valid signature and time, but a seen id
                assert await post(session, receiver.url, body, headers) == 200
                # ... with another timestamp (as a replay after 5 minutes would need): the signature fails
                moved = str(int(headers["webhook-timestamp"]) + 60)
                assert await post(session, receiver.url, body, {**headers, "webhook-timestamp": moved}) == 401
                # ... with the body changed: refused
                assert await post(session, receiver.url, body.replace(b"detected", b"remediated"), headers) == 401
                assert handled == [fresh]

                # a delivery captured ten minutes ago and sent now is too old for the receiver (and for the
                # library), so patchgate's answer is a final 401: dead-lettered, not handled
                stale = WebhookDeliverer(config, session, delivered_late,
                                         clock=lambda: time.time() - 600)
                outcome = await stale.handle(SourceRecord("n", 0, 2, b"contoso", orjson.dumps(late)))
                assert outcome.kind == "dead_letter" and "HTTP 401" in outcome.detail
                headers, body, status = receiver.requests[-1]
                assert status == 401 and handled == [fresh]
                with pytest.raises(WebhookVerificationError, match="too old"):
                    Webhook(SECRET).verify(body, headers)

                # an id that cannot be a header value is a bad record: dead-lettered before any POST
                posts = len(receiver.requests)
                outcome = await deliverer.handle(SourceRecord("n", 0, 3, b"contoso", orjson.dumps(
                    {**late, "notification_id": "contoso/ex06\r\nX-Injected: 1"})))
                assert outcome.kind == "dead_letter" and "printable ASCII" in outcome.detail
                assert len(receiver.requests) == posts
        finally:
            await client.aclose()
            await receiver.runner.cleanup()

    asyncio.run(scenario())


async def post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> int:
    async with session.post(url, data=body, headers=headers) as response:
        return response.status


def test_signature_matches_the_standard_webhooks_library() -> None:
    hook = notify_config_from_mapping({"tenants": {"contoso": {"url": "https://x.example/", "secret": SECRET}}})
    webhook = hook.webhook_for("contoso")
    assert webhook is not None
    body = orjson.dumps(notification("contoso", 1))
    now = int(time.time())
    headers = webhook_headers(webhook, "contoso/ex01|detected|2026-11-01", now, body, 1)
    assert headers["webhook-signature"] == Webhook(SECRET).sign("contoso/ex01|detected|2026-11-01",
                                                                datetime.fromtimestamp(now, UTC), body)
    assert Webhook(SECRET).verify(body, headers, json_parse=False) is None
