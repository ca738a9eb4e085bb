"""The consumer-lag probe against a real broker: high watermark minus the group's committed offset, in
the per-tenant mode over every tenant topic as one series plus a bounded breakdown."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaException, TopicPartition

from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.kafka.lag import ConsumerLag, Deadline
from processors.metrics import REGISTRY
from processors.settings import Settings
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



def produce_each(bootstrap: str, topic: str, count: int) -> None:
    """``count`` records, one producer batch each (Tansu reports a partition's end per batch)."""
    producer = clients.producer(KafkaConfig(bootstrap), {"linger.ms": 0})
    for _ in range(count):
        producer.produce(topic, value=b"x", partition=0)
        assert producer.flush(10) == 0


def commit(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    committer = clients.consumer(KafkaConfig(bootstrap), {"group.id": group, "enable.auto.commit": False})
    committer.commit(offsets=offsets, asynchronous=False)
    committer.close()


def test_the_per_tenant_mode_measures_every_tenant_topic_as_one_bounded_series(
        kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    shared, group = unique_name("lagmeta"), unique_name("lag-group")
    settings = Settings.from_env({}, kafka_bootstrap=kafka_bootstrap, topic_metadata=shared,
                                 metadata_topic_mode="per-tenant")
    for topic in (shared, f"{shared}.contoso", f"{shared}.fabrikam", f"{shared}.northwind", f"{shared}x.other"):
        create_topic(kafka_bootstrap, topic, partitions=1)
    produce_each(kafka_bootstrap, shared, 1)
    produce_each(kafka_bootstrap, f"{shared}.contoso", 5)
    produce_each(kafka_bootstrap, f"{shared}.fabrikam", 2)  # no worker has read any of it
    produce_each(kafka_bootstrap, f"{shared}x.other", 7)  # not a tenant topic: not the group's
    commit(kafka_bootstrap, group, [TopicPartition(shared, 0, 1), TopicPartition(f"{shared}.contoso", 0, 1)])

    probe = ConsumerLag(KafkaConfig(kafka_bootstrap), group, shared, tenant_pattern=settings.metadata_topic_pattern)
    assert probe.export() == {0: 0}  # the shared topic's partitions, as in the shared mode
    assert lag_value(shared, "0") == 0
    assert lag_value(f"{shared}.*", "all") == 4 + 2
    assert tenant_lag(f"{shared}.contoso") == 4 and tenant_lag(f"{shared}.fabrikam") == 2
    assert tenant_lag(f"{shared}.northwind") is None  # empty: no series
    assert lag_value(f"{shared}.contoso", "0") is None  # no per-tenant series in patchgate_consumer_lag

    commit(kafka_bootstrap, group, [TopicPartition(f"{shared}.contoso", 0, 5)])
    produce_each(kafka_bootstrap, f"{shared}.northwind", 3)  # a tenant's first records, no commit yet
    probe.export()
    assert lag_value(f"{shared}.*", "all") == 2 + 3
    assert tenant_lag(f"{shared}.contoso") is None and tenant_lag(f"{shared}.northwind") == 3

    # a topic the broker does not describe is left out of the run and counted; the others are measured
    before = REGISTRY.get_sample_value("patchgate_consumer_lag_errors_total", {"scope": "topic"}) or 0.0
    described = probe.admin.list_topics(timeout=10).topics
    lag = probe.measure_topics([shared, f"{shared}.fabrikam", f"{shared}.gone"], described, Deadline(10))
    assert lag == {shared: {0: 0}, f"{shared}.fabrikam": {0: 2}}
    assert REGISTRY.get_sample_value("patchgate_consumer_lag_errors_total", {"scope": "topic"}) == before + 1


def lag_value(topic: str, partition: str) -> float | None:
    return REGISTRY.get_sample_value("patchgate_consumer_lag", {"topic": topic, "partition": partition})


def tenant_lag(topic: str) -> float | None:
    return REGISTRY.get_sample_value("patchgate_tenant_topic_lag", {"topic": topic})


def test_an_unreachable_broker_fails_the_run_within_its_timeout_and_is_counted() -> None:
    from processors.devservices.base import free_port

    probe = ConsumerLag(KafkaConfig(f"127.0.0.1:{free_port()}"), "g", "nowhere.metadata",
                        tenant_pattern=r"^nowhere\.metadata\.(.+)$")
    before = REGISTRY.get_sample_value("patchgate_consumer_lag_errors_total", {"scope": "run"}) or 0.0
    with pytest.raises(KafkaException):
        probe.export(timeout=1.0)
    assert REGISTRY.get_sample_value("patchgate_consumer_lag_errors_total", {"scope": "run"}) == before + 1
