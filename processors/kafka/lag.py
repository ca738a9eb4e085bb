"""The consumer group's lag on the metadata topics, for ``patchgate_consumer_lag``.

Lag per partition = the partition's high watermark minus the group's committed offset (minus the
low watermark where the group has committed nothing yet: everything still there is unread). Asked
of the broker with admin requests, not taken from Faust's fetcher: it must keep growing when the
workers are stuck (Redis down, a crash loop), which is when an SRE needs it. Each worker measures
every partition every ``PATCHGATE_LAG_INTERVAL_S`` seconds (the values agree; alert on ``max``).

Which topics: the shared metadata topic, by partition, in both topic modes; in the per-tenant mode
also every topic the broker holds that matches the tenant pattern (:func:`lag_topics`), whether the
worker consumes it yet or not: a tenant topic created a moment ago, or one whose verdicts topic
cannot be created, has unread records all the same. The tenant topics are one series,
``topic="<metadata>.*", partition="all"`` (their lags summed), so the label set stays bounded
however many tenants there are and the alerts on ``patchgate_consumer_lag`` cover them unchanged;
``patchgate_tenant_topic_lag{topic}`` names the :data:`TENANT_TOPICS_SHOWN` tenant topics with the
most lag (only those with any).

One run is at most four requests to the broker whatever the number of topics, all within one
deadline. A topic the broker cannot describe or measure (deleted meanwhile, a partition without a
leader) is left out of the run and counted (``patchgate_consumer_lag_errors_total{scope="topic"}``);
a run that fails as a whole is counted (``scope="run"``) and raises, the gauges keep their values.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from processors.errors import PatchgateError
from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.kafka.logs import kafka_logger
from processors.metrics import CONSUMER_LAG, CONSUMER_LAG_FAILURES, TENANT_TOPIC_LAG

log = logging.getLogger(__name__)
TENANT_TOPICS_SHOWN = 10  # tenant topics named in patchgate_tenant_topic_lag, the most lagging first
ALL_PARTITIONS = "all"  # the partition label of the tenant topics' summed lag


class LagUnmeasurable(PatchgateError):
    """A lag measurement run that measured nothing: out of time, or no topic could be measured."""


@dataclass(frozen=True)
class LagTopics:
    """The topics one run measures: the shared metadata topic and the tenant topics (sorted)."""

    shared: str
    tenants: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [self.shared, *self.tenants]


def lag_topics(shared: str, tenant_pattern: str | None, present: list[str] | set[str]) -> LagTopics:
    """The topics to measure among those the broker holds: the shared one, and with a tenant
    pattern (the per-tenant mode) every topic it matches."""
    if tenant_pattern is None:
        return LagTopics(shared)
    pattern = re.compile(tenant_pattern)
    return LagTopics(shared, tuple(sorted(name for name in present if name != shared and pattern.match(name))))


def tenant_topics_label(shared: str) -> str:
    """The ``topic`` label of the tenant topics' summed lag: ``<metadata>.*``."""
    return f"{shared}.*"


def most_lagging(lag_by_topic: dict[str, int], limit: int = TENANT_TOPICS_SHOWN) -> dict[str, int]:
    """The ``limit`` topics with the most lag (ties by name), those with none left out."""
    ranked = sorted((item for item in lag_by_topic.items() if item[1] > 0), key=lambda item: (-item[1], item[0]))
    return dict(ranked[:limit])


class Deadline:
    """The time left for one measurement run; every request gets what remains."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise LagUnmeasurable("the lag measurement ran out of time")
        return left


class ConsumerLag:
    """Measures the group's lag; ``tenant_pattern`` (the per-tenant mode) adds the tenant topics."""

    def __init__(self, kafka: KafkaConfig, group: str, topic: str, tenant_pattern: str | None = None) -> None:
        self.kafka = kafka
        self.group = group
        self.topic = topic
        self.tenant_pattern = tenant_pattern
        self._admin: AdminClient | None = None  # created on first use: it connects at once
        self._shown: set[str] = set()  # the tenant topics patchgate_tenant_topic_lag holds now

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = clients.admin(self.kafka, {"log_level": 3, "logger": kafka_logger("patchgate.kafka.lag")})
        return self._admin

    def measure(self, timeout: float = 10.0) -> dict[int, int]:
        """Lag of the shared metadata topic by partition (blocking: run it in an executor)."""
        deadline = Deadline(timeout)
        described = self.admin.list_topics(self.topic, timeout=deadline.left()).topics
        return self.measure_topics([self.topic], described, deadline)[self.topic]

    def describe(self, deadline: Deadline) -> tuple[LagTopics, dict[str, Any]]:
        """The topics to measure now and the broker's description of them (one request)."""
        if self.tenant_pattern is None:
            return LagTopics(self.topic), self.admin.list_topics(self.topic, timeout=deadline.left()).topics
        described = self.admin.list_topics(timeout=deadline.left()).topics
        return lag_topics(self.topic, self.tenant_pattern, set(described)), described

    def measure_topics(self, names: list[str], described: dict[str, Any],
                       deadline: Deadline) -> dict[str, dict[int, int]]:
        """Lag by topic and partition. A topic that cannot be measured on every partition is left
        out and counted (a partial sum would under-report); none measured at all fails the run."""
        skipped: dict[str, str] = {}
        partitions = self._partitions(names, described, skipped)
        lag: dict[str, dict[int, int]] = {}
        if partitions:
            lag = self._lag(partitions, deadline)
        for tp in partitions:
            if tp.partition not in lag.get(tp.topic, {}):
                skipped.setdefault(tp.topic, "the broker gave no offset for some of its partitions")
        for topic in skipped:
            lag.pop(topic, None)
        if not lag:  # a failed run, counted as one (not once per topic)
            first = next(iter(skipped.items()), ("-", "-"))
            raise LagUnmeasurable(f"cannot measure the lag of any of {len(names)} topic(s) ({first[0]}: {first[1]})")
        if skipped:
            CONSUMER_LAG_FAILURES.labels("topic").inc(len(skipped))
            shown = "; ".join(f"{topic}: {why}" for topic, why in list(skipped.items())[:3])
            log.warning("consumer lag of %d topic(s) not measured this time (%s%s)", len(skipped), shown,
                        "; ..." if len(skipped) > 3 else "")
        return lag

    @staticmethod
    def _partitions(names: list[str], described: dict[str, Any], skipped: dict[str, str]) -> list[TopicPartition]:
        partitions: list[TopicPartition] = []
        for name in names:
            meta = described.get(name)
            if meta is None or meta.error is not None or not meta.partitions:
                skipped[name] = f"cannot describe it: {meta.error if meta is not None else 'not found'}"
                continue
            partitions.extend(TopicPartition(name, p) for p in sorted(meta.partitions))
        return partitions

    def _lag(self, partitions: list[TopicPartition], deadline: Deadline) -> dict[str, dict[int, int]]:
        committed = self._committed(partitions, deadline)
        latest = self._offsets(partitions, OffsetSpec.latest(), deadline)
        unread = [tp for tp in partitions if committed.get((tp.topic, tp.partition), -1) < 0]
        earliest = self._offsets(unread, OffsetSpec.earliest(), deadline) if unread else {}
        lag: dict[str, dict[int, int]] = {}
        for tp in partitions:
            key = (tp.topic, tp.partition)
            start = committed.get(key, -1)
            if start < 0:  # nothing committed (or an invalid offset): all that is left is unread
                start = earliest.get(key, -1)
            if key in latest and start >= 0:
                lag.setdefault(tp.topic, {})[tp.partition] = max(0, latest[key] - start)
        return lag

    def _committed(self, partitions: list[TopicPartition], deadline: Deadline) -> dict[tuple[str, int], int]:
        request = [ConsumerGroupTopicPartitions(self.group, partitions)]
        future = self.admin.list_consumer_group_offsets(request, request_timeout=deadline.left())[self.group]
        return {(tp.topic, tp.partition): tp.offset for tp in future.result(deadline.left()).topic_partitions
                if tp.error is None}

    def _offsets(self, partitions: list[TopicPartition], spec: OffsetSpec,
                 deadline: Deadline) -> dict[tuple[str, int], int]:
        futures = self.admin.list_offsets({tp: spec for tp in partitions}, request_timeout=deadline.left())
        offsets = {}
        for tp, future in futures.items():
            try:
                offsets[(tp.topic, tp.partition)] = future.result(deadline.left()).offset
            except KafkaException as error:  # one partition's refusal: its topic is left out, not the run
                log.debug("no offset for %s[%d]: %s", tp.topic, tp.partition, error)
        return offsets

    def export(self, timeout: float = 10.0) -> dict[int, int]:
        """Measure every topic within ``timeout`` and set the gauges; returns the shared topic's lag
        by partition (blocking: run it in an executor)."""
        self.admin.poll(0)  # serve the client's queued log lines
        try:
            deadline = Deadline(timeout)
            topics, described = self.describe(deadline)
            lag = self.measure_topics(topics.names, described, deadline)
        except Exception:
            CONSUMER_LAG_FAILURES.labels("run").inc()
            raise
        for partition, value in lag.get(self.topic, {}).items():
            CONSUMER_LAG.labels(self.topic, str(partition)).set(value)
        if self.tenant_pattern is not None:
            self.export_tenant_lag({name: sum(lag[name].values()) for name in topics.tenants if name in lag})
        return lag.get(self.topic, {})

    def export_tenant_lag(self, lag_by_topic: dict[str, int]) -> None:
        """Set the tenant topics' summed lag and the breakdown of the most lagging ones, removing
        the series of topics that left it."""
        CONSUMER_LAG.labels(tenant_topics_label(self.topic), ALL_PARTITIONS).set(sum(lag_by_topic.values()))
        shown = most_lagging(lag_by_topic)
        for topic, value in shown.items():
            TENANT_TOPIC_LAG.labels(topic).set(value)
        for topic in self._shown - shown.keys():
            TENANT_TOPIC_LAG.remove(topic)
        self._shown = set(shown)
