"""The consumer group's lag on the metadata topic, for ``patchgate_consumer_lag``.

Lag per partition = the partition's high watermark minus the group's committed offset (minus the
low watermark where the group has committed nothing yet: everything still there is unread). Asked
of the broker with two admin requests, not taken from Faust's fetcher: it must keep growing when
the workers are stuck (Redis down, a crash loop), which is when an SRE needs it. Each worker measures
every partition every ``PATCHGATE_LAG_INTERVAL_S`` seconds (the values agree; alert on ``max``).
"""

from __future__ import annotations

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.kafka.logs import kafka_logger
from processors.metrics import CONSUMER_LAG


class ConsumerLag:
    def __init__(self, kafka: KafkaConfig, group: str, topic: str) -> None:
        self.kafka = kafka
        self.group = group
        self.topic = topic
        self._admin: AdminClient | None = None  # created on first use: it connects at once

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = clients.admin(self.kafka, {"log_level": 3, "logger": kafka_logger("patchgate.kafka.lag")})
        return self._admin

    def measure(self, timeout: float = 10.0) -> dict[int, int]:
        """Lag by partition (blocking: run it in an executor)."""
        meta = self.admin.list_topics(self.topic, timeout=timeout).topics[self.topic]
        if meta.error is not None:
            raise RuntimeError(f"cannot describe {self.topic}: {meta.error}")
        partitions = [TopicPartition(self.topic, p) for p in sorted(meta.partitions)]
        request = [ConsumerGroupTopicPartitions(self.group, partitions)]
        committed_future = self.admin.list_consumer_group_offsets(request, request_timeout=timeout)[self.group]
        latest = self.admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions}, request_timeout=timeout)
        earliest = self.admin.list_offsets({tp: OffsetSpec.earliest() for tp in partitions},
                                           request_timeout=timeout)
        committed = {tp.partition: tp.offset for tp in committed_future.result(timeout).topic_partitions}
        lag = {}
        for tp in partitions:
            high = latest[tp].result(timeout).offset
            start = committed.get(tp.partition, -1)
            if start < 0:  # nothing committed (or an invalid offset): all that is left is unread
                start = earliest[tp].result(timeout).offset
            lag[tp.partition] = max(0, high - start)
        return lag

    def export(self, timeout: float = 10.0) -> dict[int, int]:
        self.admin.poll(0)  # serve the client's queued log lines
        lag = self.measure(timeout)
        for partition, value in lag.items():
            CONSUMER_LAG.labels(self.topic, str(partition)).set(value)
        return lag
