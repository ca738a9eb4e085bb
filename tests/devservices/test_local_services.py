"""The session services really answer: records go through the broker, values through Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from confluent_kafka.admin import NewTopic

from processors.kafka import clients
from processors.kafka.config import KafkaConfig

pytestmark = pytest.mark.integration


def test_broker_round_trip(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("roundtrip")
    admin = clients.admin(KafkaConfig(kafka_bootstrap))
    futures = admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1,
                                            config={"retention.ms": "3600000", "cleanup.policy": "delete"})])
    futures[topic].result(timeout=20)
    producer = clients.producer(KafkaConfig(kafka_bootstrap))
    for index in range(50):
        producer.produce(topic, key=f"k{index}".encode(), value=f"v{index}".encode())
    assert producer.flush(20) == 0
    consumer = clients.consumer(KafkaConfig(kafka_bootstrap), {"group.id": unique_name("g"),
                                                               "auto.offset.reset": "earliest",
                                                               "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    seen: dict[bytes | None, bytes | None] = {}
    try:
        for _ in range(400):
            message = consumer.poll(0.25)
            if message is not None and message.error() is None:
                seen[message.key()] = message.value()
            if len(seen) == 50:
                break
    finally:
        consumer.close()
    assert seen == {f"k{i}".encode(): f"v{i}".encode() for i in range(50)}


def test_redis_round_trip(redis_url: str, unique_name: Callable[[str], str]) -> None:
    client = redis.Redis.from_url(redis_url)
    key = unique_name("probe")
    client.set(key, "ok", ex=60)
    assert client.get(key) == b"ok"
    assert client.config_get("save")["save"] == ""
