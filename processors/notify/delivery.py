"""Delivering one notification to its tenant's webhook: retries, backoff, signature, idempotence.

Signature (the Standard Webhooks scheme, so receivers can use any of its libraries): every attempt
carries ``webhook-id`` (the notification's ``notification_id``, the same on every attempt and every
re-delivery), ``webhook-timestamp`` (unix seconds of this attempt) and, when the tenant has a secret,
``webhook-signature: v1,<base64 HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>">`` keyed
with the bytes of the ``whsec_`` secret. Because the id and the time are signed, a receiver that
rejects timestamps more than 5 minutes off and ids it has already handled cannot be fooled by a
captured request sent again. (The earlier ``X-Patchgate-Signature``, over the body alone, was
replayable and is no longer sent.) ``X-Patchgate-Delivery-Attempt`` numbers the attempts from 1.

Idempotence: delivered ``notification_id`` values are remembered per tenant in the Redis sorted set
``<p>:ten:{t:<tenant>}:webhook-delivered`` (member = id, score = delivery time); entries older than
``dedupe_ttl_s`` are trimmed on every write and the key expires ``dedupe_ttl_s`` after the last
delivery, so it is a set of ids whose members expire one by one. A notification whose id is in it is
not posted again (Kafka redelivery after a crash, the worker publishing an outbox twice). A crash
between the POST and the write can still post twice: receivers should drop duplicates by
``webhook-id`` (the body's ``notification_id``), which is stable.

Retries: network errors, timeouts, 408, 425, 429 and 5xx are retried up to ``max_attempts`` with
exponential backoff; other 4xx answers are permanent (the receiver refuses this request) and dead-letter
at once. Dead letters go to the dead-letter topic as ``patchgate.deadletter/1``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import orjson

from processors import metrics
from processors.contracts import ContractError
from processors.events.deadletter import dead_letter
from processors.events.notification import parse_notification
from processors.events.wire import encode_event
from processors.notify.config import DeliveryPolicy, NotifyConfig, Webhook
from processors.state.protocol import Store

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429})
HEADER_SAFE_ID = re.compile(r"^[\x21-\x7e]{1,256}$")
USER_AGENT = "patchgate-notify/1"


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(hook: Webhook, message_id: str, timestamp: int, body: bytes, attempt: int) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "X-Patchgate-Delivery-Attempt": str(attempt),
    }
    key = hook.key
    if key is not None:
        headers["webhook-signature"] = signature(key, message_id, timestamp, body)
    return headers


class DeliveredIds:
    """Notification ids delivered in the last ``ttl_s`` seconds, per tenant, kept by the state store."""

    def __init__(self, store: Store, ttl_s: int) -> None:
        self.store = store
        self.ttl_s = ttl_s

    async def contains(self, tenant: str, notification_id: str) -> bool:
        delivered_at = await self.store.webhook_delivered_at(tenant, notification_id)
        return delivered_at is not None and delivered_at > time.time() - self.ttl_s

    async def add(self, tenant: str, notification_id: str) -> None:
        await self.store.mark_webhook_delivered(tenant, notification_id, time.time(), self.ttl_s)


@dataclass(frozen=True, slots=True)
class SourceRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # delivered | duplicate | no_webhook | dead_letter
    attempts: int = 0
    detail: str = ""
    dead_letter: bytes | None = None  # the dead-letter record to publish


def dead_letter_record(source: SourceRecord, reason: str, path: str | None = None,
                       now: datetime | None = None) -> bytes:
    record = dead_letter(topic=source.topic, partition=source.partition, offset=source.offset, key=source.key,
                         value=source.value, reason=reason, path=path, at=now or datetime.now(UTC))
    return encode_event(record)


Sleep = Callable[[float], Awaitable[None]]


class WebhookDeliverer:
    def __init__(self, config: NotifyConfig, session: aiohttp.ClientSession, delivered: DeliveredIds,
                 sleep: Sleep = asyncio.sleep, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.session = session
        self.delivered = delivered
        self.sleep = sleep
        self.clock = clock  # wall time: receivers compare webhook-timestamp with their own clock

    @property
    def policy(self) -> DeliveryPolicy:
        return self.config.delivery

    async def handle(self, source: SourceRecord) -> Outcome:
        """Deliver one consumed notification record; never raises for bad input or a bad receiver."""
        try:
            document = parse_notification(source.value or b"")
        except orjson.JSONDecodeError as error:
            return self._dead(source, f"invalid notification: not JSON: {error}", 0)
        except ContractError as error:
            return self._dead(source, f"invalid notification: {error}", 0, getattr(error, "path", None))
        tenant = document["tenant_id"]
        notification_id = document["notification_id"]
        if not HEADER_SAFE_ID.match(notification_id):
            return self._dead(source, "invalid notification: notification_id must be printable ASCII to be sent as "
                                      "webhook-id", 0, "$.notification_id")
        hook = self.config.webhook_for(tenant)
        if hook is None:
            metrics.WEBHOOK_DELIVERIES.labels("no_webhook").inc()
            return Outcome("no_webhook")
        if await self.delivered.contains(tenant, notification_id):
            metrics.WEBHOOK_DELIVERIES.labels("duplicate").inc()
            return Outcome("duplicate")
        body = source.value or b""
        last_error = ""
        for attempt in range(1, self.policy.max_attempts + 1):
            status, last_error = await self._post(hook, body, notification_id, attempt)
            if status is not None and 200 <= status < 300:
                await self.delivered.add(tenant, notification_id)
                metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
                log.info("notification %s delivered to %s's webhook (attempt %d)", notification_id, tenant, attempt,
                         extra={"tenant": tenant})
                return Outcome("delivered", attempt)
            if status is not None and 400 <= status < 500 and status not in RETRYABLE_STATUS:
                metrics.WEBHOOK_DELIVERIES.labels("permanent").inc()
                return self._dead(source, f"webhook refused the notification permanently: {last_error}", attempt)
            if attempt < self.policy.max_attempts:
                metrics.WEBHOOK_DELIVERIES.labels("retry").inc()
                delay = self.policy.backoff(attempt)
                log.warning("webhook of %s failed (attempt %d: %s); retrying in %.1fs",
                            tenant, attempt, last_error, delay, extra={"tenant": tenant})
                await self.sleep(delay)
        return self._dead(source, f"webhook delivery failed after {self.policy.max_attempts} attempts; "
                                  f"last error: {last_error}", self.policy.max_attempts)

    async def _post(self, hook: Webhook, body: bytes, notification_id: str, attempt: int) -> tuple[int | None, str]:
        headers = webhook_headers(hook, notification_id, int(self.clock()), body, attempt)
        try:
            timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
            async with self.session.post(hook.url, data=body, headers=headers, timeout=timeout,
                                         allow_redirects=False) as response:
                await response.read()
                return response.status, f"HTTP {response.status}"
        except TimeoutError:
            return None, f"timeout after {self.policy.timeout_s:.1f}s"
        except aiohttp.ClientError as error:
            return None, f"{type(error).__name__}: {error}"

    def _dead(self, source: SourceRecord, reason: str, attempts: int, path: str | None = None) -> Outcome:
        metrics.WEBHOOK_DELIVERIES.labels("dead_letter").inc()
        metrics.DEAD_LETTERS.labels(metrics.reason_label(reason)).inc()
        log.error("notification at %s[%d]@%d dead-lettered: %s", source.topic, source.partition, source.offset,
                  reason)
        return Outcome("dead_letter", attempts, reason, dead_letter_record(source, reason, path))
