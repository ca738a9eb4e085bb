"""The webhook notifier: consume ``patchgate.notifications``, POST each to its tenant's webhook.

A confluent-kafka consumer in group ``patchgate-notify`` (``session.timeout.ms`` 6000: Tansu delays a
group join by half the session timeout) takes up to 100 records at a time. Records of different
tenants are delivered concurrently, those of one tenant in order. Offsets are committed after every
record of the batch is delivered, found to be a duplicate, skipped (tenant without webhook) or
dead-lettered (dead letters acknowledged by the broker first), so nothing is lost on a crash; Redis
or broker failures retry the whole batch with backoff (delivered ids make the retry idempotent).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from processors import metrics
from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.kafka.delivery import DeliveryFailed, KafkaOutput
from processors.kafka.logs import kafka_logger
from processors.kafka.types import PARTITION_EOF, Consumer, KafkaException, Message, TopicPartition
from processors.notify.config import NotifyConfig
from processors.notify.delivery import DeliveredIds, Outcome, SourceRecord, WebhookDeliverer
from processors.probes import Probes, kafka_check, redis_check
from processors.state.errors import StoreUnavailable
from processors.state.keys import KeySchema
from processors.state.store import StateStore

log = logging.getLogger(__name__)

GROUP = "patchgate-notify"
KAFKA_LOG = kafka_logger("patchgate.notify.kafka")


@dataclass
class NotifyStats:
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: Outcome) -> None:
        self.outcomes[outcome.kind] = self.outcomes.get(outcome.kind, 0) + 1


class NotifyService:
    def __init__(self, *, kafka: KafkaConfig, notifications_topic: str, deadletter_topic: str, redis_url: str,
                 key_prefix: str, config: NotifyConfig, group: str = GROUP, session_timeout_ms: int = 6000,
                 batch_size: int = 100) -> None:
        self.kafka = kafka
        self.topic = notifications_topic
        self.deadletter_topic = deadletter_topic
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.config = config
        self.group = group
        self.session_timeout_ms = session_timeout_ms
        self.batch_size = batch_size
        self.stats = NotifyStats()
        self.assigned = asyncio.Event()
        self.refusal = clients.RefusalWatch(kafka, KAFKA_LOG)  # says why when the brokers refuse the client

    def _consumer(self) -> Consumer:
        policy = self.config.delivery
        # the longest a batch can take: every attempt times out and waits the longest backoff
        worst_ms = int(policy.max_attempts * (policy.timeout_s + policy.max_backoff_s) * 1000) + 60_000
        consumer = clients.consumer(self.kafka, {
            "group.id": self.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": max(500, self.session_timeout_ms // 5),
            "max.poll.interval.ms": max(300_000, worst_ms),
            "error_cb": self.refusal,
            "log_level": 3,
        }, logger=KAFKA_LOG)  # repeats summarised: with no broker the consumer logs ~20 lines a second
        consumer.subscribe([self.topic], on_assign=lambda c, parts: self.assigned.set())
        return consumer

    async def run(self, stop: asyncio.Event, probes: Probes | None = None) -> NotifyStats:
        """Deliver until ``stop`` is set, or until the brokers refuse the client (``refusal.reason``).

        ``probes``: readiness follows Redis and the brokers, checked through this run's own clients.
        """
        loop = asyncio.get_running_loop()
        self.refusal.on_refused = lambda: loop.call_soon_threadsafe(stop.set)
        consumer = self._consumer()
        output = KafkaOutput(self.kafka, **{"message.timeout.ms": 15000, "logger": KAFKA_LOG})
        store = StateStore.from_url(self.redis_url, KeySchema(self.key_prefix))
        delivered = DeliveredIds(store, self.config.delivery.dedupe_ttl_s)
        if probes is not None:
            probes.watch("redis", redis_check(store), stop)
            probes.watch("kafka", kafka_check(output.producer), stop)
        try:
            async with aiohttp.ClientSession(headers={"User-Agent": "patchgate-notify/1"}) as session:
                deliverer = WebhookDeliverer(self.config, session, delivered)
                while not stop.is_set():
                    messages = await loop.run_in_executor(None, consumer.consume, self.batch_size, 0.5)
                    output.producer.poll(0)  # serve the idle producer's log lines
                    records = self._records(messages)
                    if not records:
                        continue
                    metrics.EVENTS_IN.labels(self.topic).inc(len(records))
                    await self._process_with_retry(records, deliverer, output, stop)
                    offsets = self._offsets(records)
                    await loop.run_in_executor(None, functools.partial(consumer.commit, offsets=offsets,
                                                                       asynchronous=False))
        finally:
            await loop.run_in_executor(None, consumer.close)
            await store.close()
            output.producer.flush(5)
            output.producer.close()
        return self.stats

    def _records(self, messages: Sequence[Message]) -> list[SourceRecord]:
        records = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != PARTITION_EOF:
                    log.warning("consumer error: %s", error)
                continue
            records.append(SourceRecord(message.topic() or "", message.partition() or 0, message.offset() or 0,
                                        message.key(), message.value()))
        return records

    @staticmethod
    def _offsets(records: Sequence[SourceRecord]) -> list[TopicPartition]:
        last: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic, record.partition)
            last[key] = max(last.get(key, -1), record.offset)
        return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in sorted(last.items())]

    async def _process_with_retry(self, records: list[SourceRecord], deliverer: WebhookDeliverer,
                                  output: KafkaOutput, stop: asyncio.Event) -> None:
        delay = 0.5
        while True:
            try:
                await self.process(records, deliverer, output)
                return
            except (StoreUnavailable, DeliveryFailed, KafkaException, OSError) as error:
                if stop.is_set():
                    raise
                log.error("notification batch failed, retrying in %.1fs: %s", delay, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def process(self, records: Sequence[SourceRecord], deliverer: WebhookDeliverer,
                      output: KafkaOutput) -> list[Outcome]:
        """Deliver a batch: tenants concurrently, each tenant's records in order; publish dead letters."""
        by_tenant: dict[bytes, list[int]] = {}
        for index, record in enumerate(records):
            by_tenant.setdefault(record.key or b"", []).append(index)
        outcomes: list[Outcome | None] = [None] * len(records)

        async def run_tenant(indexes: list[int]) -> None:
            for index in indexes:
                outcomes[index] = await deliverer.handle(records[index])

        await asyncio.gather(*(run_tenant(indexes) for indexes in by_tenant.values()))
        done = [outcome for outcome in outcomes if outcome is not None]
        dead = [(records[i], o) for i, o in enumerate(outcomes) if o is not None and o.dead_letter is not None]
        for record, outcome in dead:
            output.produce(self.deadletter_topic, record.key, outcome.dead_letter)
        if dead:
            await output.flush(20)
            metrics.EVENTS_OUT.labels(self.deadletter_topic).inc(len(dead))
        for outcome in done:
            self.stats.count(outcome)
        return done
