"""Topic creation and record reading against the session broker (explicit configs: Tansu needs them)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from confluent_kafka.admin import NewTopic

from processors.kafka import clients
from processors.kafka.config import KafkaConfig


def create_topic(bootstrap: str, name: str, partitions: int = 3, *, compact: bool = False) -> None:
    admin = clients.admin(KafkaConfig(bootstrap))
    config = {"cleanup.policy": "compact" if compact else "delete", "retention.ms": "-1" if compact else "604800000"}
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)])
    futures[name].result(15)


def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes | None]]) -> None:
    producer = clients.producer(KafkaConfig(bootstrap), {"linger.ms": 0})
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value)
    remaining = producer.flush(15)
    assert remaining == 0, f"{remaining} records not delivered"


def read_all(bootstrap: str, topic: str, expected: int = 0, timeout: float = 20.0,
             until: Callable[[list[tuple[Any, Any]]], bool] | None = None) -> list[tuple[bytes | None, bytes | None]]:
    """Read from the beginning of every partition until ``expected`` Kafka records arrived, or
    ``until(records)`` holds (checked after each fetch), or the timeout."""
    done = until or (lambda got: len(got) >= expected)
    consumer = clients.consumer(KafkaConfig(bootstrap), {"group.id": f"t-{uuid.uuid4().hex[:8]}",
                                                         "enable.auto.commit": False, "enable.partition.eof": False})
    md = consumer.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out: list[tuple[Any, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(out) and time.monotonic() < deadline:
            for msg in consumer.consume(100, timeout=0.5):
                err = msg.error()
                if err is None:
                    out.append((msg.key(), msg.value()))
                elif err.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(err))
    finally:
        consumer.close()
    return out
