"""Kafka output: a confluent-kafka producer whose deliveries the asyncio side can await."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer


class DeliveryFailed(RuntimeError):
    """At least one record of a flush was not acknowledged by the broker."""


class KafkaOutput:
    def __init__(self, bootstrap: str, **config: Any) -> None:
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            # idempotence: broker-side retries never duplicate a record
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.max.bytes": 4_000_000,
            "log_level": 3,
            **config,
        })
        self._errors: list[str] = []
        self.delivered = 0

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}: {error}")
        else:
            self.delivered += 1

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
        await asyncio.get_running_loop().run_in_executor(None, self.flush_sync, timeout)
