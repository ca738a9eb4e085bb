"""The consumer-lag probe against a real broker: high watermark minus the group's committed offset."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import TopicPartition

from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.kafka.lag import ConsumerLag
from processors.metrics import REGISTRY
from tests.edge.kafka_helpers import create_topic

pytestmark = pytest.mark.integration


def test_lag_is_high_watermark_minus_committed_offset(kafka_bootstrap: str,
                                                      unique_name: Callable[[str], str]) -> None:
    topic, group = unique_name("lag"), unique_name("lag-group")
    create_topic(kafka_bootstrap, topic, partitions=3)
    producer = clients.producer(KafkaConfig(kafka_bootstrap), {"linger.ms": 0})
    for i in range(30):  # 10 per partition, one batch each (Tansu reports a partition's end per batch)
        producer.produce(topic, value=b"x", partition=i % 3)
        assert producer.flush(10) == 0
    committer = clients.consumer(KafkaConfig(kafka_bootstrap), {"group.id": group, "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 10)], asynchronous=False)
    committer.close()

    probe = ConsumerLag(KafkaConfig(kafka_bootstrap), group, topic)
    assert probe.export() == {0: 6, 1: 0, 2: 10}  # partition 2: nothing committed, all 10 unread
    assert REGISTRY.get_sample_value("patchgate_consumer_lag", {"topic": topic, "partition": "0"}) == 6
    idle = ConsumerLag(KafkaConfig(kafka_bootstrap), unique_name("idle-group"), topic)
    assert idle.measure() == {0: 10, 1: 10, 2: 10}

