"""The local Apache Kafka 4.x broker: real produce/consume, data kept across a restart, compaction."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from processors.devservices.apache_kafka import ApacheKafkaBroker
from processors.kafka import clients
from processors.kafka.config import KafkaConfig

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(own_apache_broker: ApacheKafkaBroker) -> ApacheKafkaBroker:
    return own_apache_broker


def create_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    admin = clients.admin(KafkaConfig(bootstrap))
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                            config=config or {})])
    futures[name].result(timeout=30)


def consume_group(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> dict[str, str]:
    """Read with a fresh consumer group from the earliest offset until ``expected`` keys arrived."""
    consumer = clients.consumer(KafkaConfig(bootstrap), {
        "group.id": f"test-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "enable.auto.commit": False,
    })
    seen: dict[str, str] = {}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(seen) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            seen[text(msg.key())] = text(msg.value())
    finally:
        consumer.close()
    return seen


def text(data: bytes | str | None) -> str:
    assert data is not None
    return data.decode() if isinstance(data, bytes) else data


def read_partitions(bootstrap: str, topic: str, partitions: int,
                    timeout: float = 20.0) -> list[tuple[str, str]]:
    """Every record now in ``topic``, from the start of each partition to its high watermark."""
    consumer = clients.consumer(KafkaConfig(bootstrap), {"group.id": "unused-reader",
                                                         "enable.auto.commit": False})
    records: list[tuple[str, str]] = []
    try:
        pending: dict[int, int] = {}
        for p in range(partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > 0:
                pending[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(pending)} did not reach their end")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            records.append((text(msg.key()), text(msg.value())))
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None
            if offset + 1 >= pending.get(partition, 0):
                pending.pop(partition, None)
    finally:
        consumer.close()
    return records


def test_produce_consume_and_data_survives_restart(broker: ApacheKafkaBroker) -> None:
    assert broker.startup_seconds is not None and broker.startup_seconds < 90
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, partitions=8)
    producer = clients.producer(KafkaConfig(broker.bootstrap), {"acks": "all", "enable.idempotence": True})
    sent = {f"key-{i:03d}": f"value-{i}" for i in range(100)}
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    assert consume_group(broker.bootstrap, topic, expected=100) == sent

    port = broker.port
    broker.restart()
    assert broker.port == port and broker.running
    assert consume_group(broker.bootstrap, topic, expected=100) == sent


def test_compacted_topic_keeps_only_latest_value_per_key(broker: ApacheKafkaBroker) -> None:
    topic = f"compacted-{uuid.uuid4().hex[:8]}"
    partitions = 4
    create_topic(broker.bootstrap, topic, partitions=partitions, config={
        "cleanup.policy": "compact",
        "segment.ms": "100",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "100",
    })
    producer = clients.producer(KafkaConfig(broker.bootstrap), {"linger.ms": 0})
    keys = [f"k{i:02d}" for i in range(20)]
    rounds = 5
    for r in range(rounds):
        for key in keys:
            producer.produce(topic, key=key, value=f"{key}-v{r}")
        assert producer.flush(30) == 0
    latest = {key: f"{key}-v{rounds - 1}" for key in keys}
    # No count of the log before compaction: with segment.ms 100 the cleaner may already be at work
    # (seen on a loaded machine). Five values were sent per key; one each at the end proves compaction.

    # The cleaner never compacts a partition's active segment. Records of another key ("roll"), sent to
    # every partition once segment.ms has passed, roll the segment holding the keys above; from then on
    # the cleaner may compact it. Only "roll" records can be left in (active) segments after that, so for
    # the real keys the log must end up with exactly one record each: the latest value.
    deadline = time.monotonic() + 60
    observed: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        for p in range(partitions):
            producer.produce(topic, key="roll", value="x", partition=p)
        assert producer.flush(30) == 0
        observed = [(k, v) for k, v in read_partitions(broker.bootstrap, topic, partitions) if k != "roll"]
        if len(observed) == len(keys) and dict(observed) == latest:
            break
        time.sleep(0.5)  # give the cleaner (backoff 1 s) a chance before reading again
    counts = {key: sum(1 for k, _ in observed if k == key) for key in keys}
    assert dict(observed) == latest, f"latest values lost or stale: {observed}"
    assert all(n == 1 for n in counts.values()), f"not compacted within 60 s, copies per key: {counts}"
