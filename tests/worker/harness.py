"""Test harness for the real worker: isolated settings per test, topic readers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.kafka.topics import ensure_topics
from processors.settings import Settings


def isolated_settings(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str],
                      **overrides: Any) -> Settings:
    """Settings whose topics, consumer group and Redis prefix belong to one test only."""
    suffix = unique_name("t")
    settings = Settings.from_env({}, **{
        "kafka_bootstrap": kafka_bootstrap, "redis_url": redis_url,
        "topic_metadata": f"metadata.{suffix}", "topic_verdicts": f"verdicts.{suffix}",
        "topic_notifications": f"notifications.{suffix}", "topic_deadletter": f"deadletter.{suffix}",
        "topic_commands": f"commands.{suffix}", "consumer_group": f"worker-{suffix}", "key_prefix": f"pg-{suffix}",
        "metadata_partitions": 8, "timer_interval_s": 0.1, "batch_max_wait_ms": 20, "session_timeout_ms": 6000,
        "web_port": 0, "metrics_port": 0, "outbox_recovery_s": 2.0, **overrides,
    })
    ensure_topics(settings)
    return settings


def read_topic(bootstrap: str | KafkaConfig, topic: str, timeout: float = 30.0,
               quiet: float = 0.5) -> list[tuple[bytes | None, Any]]:
    """Every record of a topic, from the beginning, values JSON-decoded, ordered by partition and offset.

    Reads until every partition reached its end offset and then nothing new came for ``quiet``
    seconds: Tansu reports end offsets per producer batch, lower than the records it holds.
    """
    kafka = bootstrap if isinstance(bootstrap, KafkaConfig) else KafkaConfig(bootstrap)
    consumer = clients.consumer(kafka, {"group.id": "reader", "enable.auto.commit": False, "log_level": 3})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = sorted(metadata.partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: dict[tuple[int, int], tuple[bytes | None, Any]] = {}
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                value = message.value()
                partition, offset = int(message.partition() or 0), int(message.offset() or 0)
                records[(partition, offset)] = (message.key(), orjson.loads(value) if value is not None else None)
                last_new = time.monotonic()
                if offset + 1 >= ends[partition]:
                    remaining.discard(partition)
            elif not remaining and time.monotonic() - last_new >= quiet:
                break
        assert not remaining, f"could not read {topic} to its end (partitions {sorted(remaining)})"
        return [records[position] for position in sorted(records)]
    finally:
        consumer.close()


def topic_size(bootstrap: str, topic: str) -> int:
    return len(read_topic(bootstrap, topic))
