"""Delivery waits: a confluent-kafka producer whose deliveries the asyncio side can await, and the
read-back of what was published since a moment (crash recovery of the worker's outbox)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, TopicPartition

from processors.errors import PatchgateError
from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.metrics import EVENTS_OUT


class DeliveryFailed(PatchgateError, RuntimeError):
    """At least one record of a flush was not acknowledged by the broker."""


# every record patchgate publishes is acknowledged by all in-sync replicas (so a broker lost after the
# acknowledgement loses nothing) and written once (idempotence: retries never duplicate a record);
# applied after the caller's settings, which cannot turn them off
DURABLE_PRODUCER: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}


class KafkaOutput:
    def __init__(self, kafka: KafkaConfig, **config: Any) -> None:
        self.producer = clients.producer(kafka, {
            "partitioner": "murmur2_random",  # same as the Java clients and the edge publisher
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.max.bytes": 4_000_000,
            "log_level": 3,
            **config,
            **DURABLE_PRODUCER,
        })
        self._errors: list[str] = []
        self.delivered = 0

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}: {error}")
        else:
            self.delivered += 1
            EVENTS_OUT.labels(message.topic()).inc()

    def produce(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, on_delivery=self._on_delivery)
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain

    def produce_many(self, records: Sequence[tuple[str, bytes | None, bytes | None]]) -> None:
        for topic, key, value in records:
            self.produce(topic, key, value)

    def flush_sync(self, timeout: float = 30.0) -> None:
        remaining = self.producer.flush(timeout)
        errors, self._errors = self._errors, []
        if remaining:
            errors.append(f"{remaining} records still unacknowledged after {timeout:.0f}s")
        if errors:
            raise DeliveryFailed("; ".join(errors[:5]))

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait for every produced record's acknowledgement without blocking the event loop."""
        self.producer.poll(0)  # serve the delivery reports that are already in
        if len(self.producer) == 0:  # nothing queued, in flight or unreported: no thread hop
            self.flush_sync(0)
            return
        await asyncio.get_running_loop().run_in_executor(None, self.flush_sync, timeout)


def published_since(kafka: KafkaConfig, topics: Sequence[str], since: float,
                    timeout: float = 30.0) -> set[tuple[str, bytes, bytes]]:
    """Every (topic, key, value) written to ``topics`` at or after ``since`` (epoch seconds).

    Used only to recover from a crash between publishing and recording the publication, so a
    record already in Kafka is not published twice. Reads by timestamp, bounded by the end offsets.
    """
    consumer = clients.consumer(kafka, {"group.id": "patchgate-recovery", "enable.auto.commit": False,
                                        "log_level": 3})
    found: set[tuple[str, bytes, bytes]] = set()
    try:
        wanted = []
        for topic in topics:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            wanted += [TopicPartition(topic, p, int(since * 1000)) for p in partitions]
        starts = consumer.offsets_for_times(wanted, timeout=10)
        ends: dict[tuple[str, int], int] = {}
        assign = []
        for tp in starts:
            high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
            if tp.offset >= 0 and tp.offset < high:
                ends[(tp.topic, tp.partition)] = high
                assign.append(tp)
        if not assign:
            return found
        consumer.assign(assign)
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        # Past the end offsets, keep reading until quiet: some brokers (Tansu) report end offsets
        # per producer batch, below the last record.
        while time.monotonic() < deadline and (ends or time.monotonic() - last_new < 0.5):
            message = consumer.poll(0.1)
            if message is None or message.error() is not None:
                continue
            last_new = time.monotonic()
            topic, partition, offset = str(message.topic()), int(message.partition() or 0), int(message.offset() or 0)
            found.add((topic, message.key() or b"", message.value() or b""))
            if offset + 1 >= ends.get((topic, partition), 0):
                ends.pop((topic, partition), None)
        if ends:
            raise DeliveryFailed(f"could not read {sorted(ends)} to the end while recovering")
        return found
    finally:
        consumer.close()
