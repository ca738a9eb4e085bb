"""VerdictCache: the compacted verdicts topic, held in memory and followed on a background thread.

At start the cache assigns every partition of the topic from the beginning (no consumer group
offsets, nothing committed: every edge reads the whole topic), notes each partition's high watermark
and sets :attr:`caught_up` once each partition's position reached it (empty partitions count as
reached; a topic that does not exist yet counts as empty and is looked for again every
``metadata_interval`` seconds). Until then :meth:`decide` fails open and counts
``decisions_fail_open``. After that it keeps following the topic: the newest verdict per key wins
(stale sequences ignored), tombstones delete. The follower thread is supervised
(:class:`~edge.supervision.SupervisedThread`): an unexpected exception restarts it (counted, with
backoff) instead of freezing the cache at its last state; the restarted loop first rewinds every
partition to the record after the last one applied, so a batch interrupted halfway is read again.

Tenants (the per-tenant topic mode, ``PATCHGATE_METADATA_TOPIC_MODE=per-tenant``): an edge follows its
own tenant's topic ``<PATCHGATE_TOPIC_VERDICTS>.<tenant>`` with ``tenant=`` set, and an operator's
tool follows every tenant's topic with ``topic_pattern=`` (a regular expression whose one group is
the tenant; topics created later are picked up at the next metadata refresh). Either way a verdict
whose key (or, without a key, whose ``server_key``) names another tenant than its topic's is
discarded and counted in ``verdicts_foreign_tenant``: the topic, not the record, names the tenant.
A topic the brokers refuse this principal (``TOPIC_AUTHORIZATION_FAILED``: no Read/Describe ACL) is a
refusal before the cache caught up (:attr:`refused`, the edge stops at start) rather than a topic
taken for empty; later it is counted in ``consumer_errors`` and logged.

Usage::

    cache = VerdictCache("127.0.0.1:9092")
    cache.start()
    cache.wait_caught_up(10.0)
    decision = cache.decide("contoso/ex01.contoso.com", time.time())
    cache.stop()
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from edge.supervision import SupervisedThread
from edge.verdicts import VerdictIndex
from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.kafka.logs import kafka_logger
from processors.kafka.types import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "patchgate.verdicts"


class VerdictCache(VerdictIndex):
    """A :class:`~edge.verdicts.VerdictIndex` fed by a confluent-kafka consumer thread."""

    def __init__(self, kafka: KafkaConfig | str, *, topic: str = DEFAULT_TOPIC, tenant: str | None = None,
                 topic_pattern: str | None = None, consumer_config: dict[str, Any] | None = None,
                 metadata_interval: float = 5.0, max_learned_ips: int = 100_000) -> None:
        super().__init__(max_learned_ips=max_learned_ips)
        self.kafka = kafka if isinstance(kafka, KafkaConfig) else KafkaConfig(kafka)
        self.topic = topic_pattern or topic  # what the logs name
        self.tenant = tenant  # every verdict of ``topic`` must name it
        self._pattern = re.compile(topic_pattern) if topic_pattern else None
        self.metadata_interval = metadata_interval
        self._config: dict[str, Any] = {
            # librdkafka wants a group id even for manual assignment; it is never used to commit.
            "group.id": f"patchgate-edge-cache-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
            "socket.keepalive.enable": True,
            "client.id": "patchgate-edge-verdict-cache",
        }
        if consumer_config:
            self._config.update(consumer_config)
        self._consumer: Consumer | None = None
        self._thread: SupervisedThread | None = None
        self._stopping = threading.Event()
        self.thread = SupervisedThread("verdict-follower", self._loop, self._stopping, on_exit=self._close)
        self._caught_up_event = threading.Event()
        self._settled = threading.Event()  # caught up, or the brokers refused the client
        # the client's errors with repeats summarised: with no broker it reports them several times a second
        self.refusal = clients.RefusalWatch(self.kafka, kafka_logger("edge.verdict_cache.kafka"),
                                            on_refused=self._settled.set)
        self._changed = threading.Condition()
        self._assigned: set[tuple[str, int]] = set()  # (topic, partition)
        self._pending: dict[tuple[str, int], int] = {}  # (topic, partition) -> high watermark still to reach
        self._next_offset: dict[tuple[str, int], int] = {}  # -> offset after the last record applied
        self._tenants: dict[str, str | None] = {}  # topic -> the tenant its verdicts must name
        self._next_metadata = 0.0
        self._verify_rounds = 0
        self.started_at: float | None = None
        self.caught_up_at: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Create the consumer and start the follower thread. Returns at once."""
        if self._thread is not None:
            raise RuntimeError("VerdictCache already started")
        self.started_at = time.monotonic()
        self._consumer = clients.consumer(self.kafka, {**self._config, "error_cb": self.refusal}, logger=log)
        self._thread = self.thread
        self.thread.start()

    @property
    def refused(self) -> str | None:
        """The brokers' reason when they refused the consumer's credentials or TLS."""
        return self.refusal.reason

    def wait_settled(self, timeout: float | None = None) -> bool:
        """Block until caught up (True) or the brokers refused the client or ``timeout`` passed (False)."""
        self._settled.wait(timeout)
        return self.caught_up

    def wait_caught_up(self, timeout: float | None = None) -> bool:
        """Block until the topic was read to the end noted at start; False on timeout."""
        return self._caught_up_event.wait(timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds; it is re-checked after every batch of records."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> VerdictCache:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the follower thread -----------------------------------------------------------------

    def _loop(self) -> None:
        """The follower loop (supervised: restarted if it raises); returns once stopping."""
        consumer = self._consumer
        assert consumer is not None
        if self.thread.restarts and self._assigned:
            self._rewind(consumer)
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= self._next_metadata:
                self._next_metadata = now + self.metadata_interval
                self._refresh_assignment(consumer)
            # unassigned (no metadata yet), consuming still serves the client's events: a refusal
            # of the credentials reaches _on_error
            self._consume(consumer, 500 if self._assigned else 1)

    def _consume(self, consumer: Consumer, limit: int) -> None:
        try:
            messages = consumer.consume(num_messages=limit, timeout=0.2)
        except KafkaException as exc:  # pragma: no cover - client-level failure
            self.metrics.consumer_errors += 1
            log.warning("verdict consumer: %s", exc)
            return
        if messages:
            self._apply_messages(messages)

    def _apply_messages(self, messages: list[Any]) -> None:
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._reached(_where(msg), None)
                else:
                    self.metrics.consumer_errors += 1
                    log.warning("verdict consumer error: %s", err)
                continue
            where = _where(msg)
            self.apply_raw(msg.key(), msg.value(), tenant=self._tenants.get(where[0]))
            self._next_offset[where] = msg.offset() + 1
            self._reached(where, msg.offset())
        with self._changed:
            self._changed.notify_all()

    def _rewind(self, consumer: Consumer) -> None:
        """Re-assign every partition at the record after the last one applied (after a restart)."""
        partitions = sorted(self._assigned)
        consumer.incremental_unassign([TopicPartition(t, p) for t, p in partitions])
        consumer.incremental_assign([TopicPartition(t, p, self._next_offset.get((t, p), OFFSET_BEGINNING))
                                     for t, p in partitions])
        log.warning("verdict follower restarted: partitions %s rewound to %s", partitions,
                    {p: self._next_offset.get(p, "beginning") for p in partitions})

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception:  # pragma: no cover
                log.debug("consumer close failed", exc_info=True)

    def _refresh_assignment(self, consumer: Consumer) -> None:
        """Assign partitions not yet assigned (new topic or added partitions) from the beginning."""
        try:
            md = consumer.list_topics(None if self._pattern else self.topic, timeout=5.0)
        except KafkaException as exc:
            self.metrics.consumer_errors += 1
            log.warning("verdict topic metadata for %s unavailable: %s", self.topic, exc)
            if not self._assigned and self.started_at is not None \
                    and time.monotonic() - self.started_at > 30.0 and not self.caught_up:
                log.warning("verdict cache still not caught up after 30 s; failing open")
            return
        new = sorted((name, p) for name, tmd in md.topics.items() if self._follows(name, tmd)
                     for p in tmd.partitions if (name, p) not in self._assigned)
        if not new:
            # No such topic (yet) or nothing new: nothing (more) to catch up with.
            if not self._assigned and self.refused is None:
                self._mark_caught_up_if_done()
            return
        for name, p in new:
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=5.0)
            except KafkaException as exc:
                self.metrics.consumer_errors += 1
                log.warning("watermarks for %s[%d] unavailable: %s", name, p, exc)
                return  # retry the whole set at the next refresh
            if high > max(low, 0):
                self._pending[(name, p)] = high
        consumer.incremental_assign([TopicPartition(name, p, OFFSET_BEGINNING) for name, p in new])
        self._assigned.update(new)
        log.info("verdict cache assigned %s (to read: %s)", new, {k: h for k, h in self._pending.items() if k in new})
        self._mark_caught_up_if_done()

    def _follows(self, name: str, tmd: Any) -> bool:
        """Whether topic ``name`` is one to follow (and note the tenant its verdicts must name)."""
        if tmd.error is not None and name == self.topic and tmd.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            self._not_authorised(name, tmd.error)
        if tmd.error is not None or not tmd.partitions:
            return False
        if self._pattern is None:
            if name != self.topic:
                return False
            self._tenants[name] = self.tenant
            return True
        match = self._pattern.match(name)
        if match is None:
            return False
        self._tenants[name] = match.group(1)
        return True

    def _not_authorised(self, name: str, error: KafkaError) -> None:
        """The brokers refuse this principal the topic (no Describe/Read ACL): before the cache caught up
        a configuration that can never work (the edge stops, as on refused credentials), later counted
        and logged (the verdicts held stay in force)."""
        self.metrics.consumer_errors += 1
        reason = f"reading {name}: {error.str()} (the principal needs Read and Describe on it)"
        if not self.caught_up and self.refusal.reason is None:
            self.refusal.reason = reason
            log.error("Kafka refused the verdict cache: %s", reason)
            self._settled.set()
        elif self.metrics.consumer_errors % 100 == 1:
            log.warning("verdict cache: %s", reason)

    def _verify_end(self) -> bool:
        """True if every assigned partition's position is at its current high watermark."""
        consumer = self._consumer
        assert consumer is not None
        try:
            positions = consumer.position([TopicPartition(t, p) for t, p in sorted(self._assigned)])
            for tp in positions:
                low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5.0)
                position = tp.offset if tp.offset >= 0 else low
                if high > max(position, low, 0):
                    self._pending[(tp.topic, tp.partition)] = high
        except KafkaException as exc:
            self.metrics.consumer_errors += 1
            log.warning("verdict topic end offsets unavailable: %s", exc)
        return not self._pending

    def _reached(self, where: tuple[str, int], offset: int | None) -> None:
        if not self._pending:
            return
        target = self._pending.get(where)
        if target is None:
            return
        if offset is None or offset + 1 >= target:
            del self._pending[where]
            self._mark_caught_up_if_done()

    def _mark_caught_up_if_done(self) -> None:
        if self._pending or self.caught_up:
            return
        if self._assigned and self._verify_rounds < 3:
            # Re-check the end offsets once everything noted at start was read: some brokers (Tansu)
            # under-report high watermarks right after producing. Bounded, so a busy topic still ends.
            self._verify_rounds += 1
            if not self._verify_end():
                return
        self.caught_up = True
        self.caught_up_at = time.monotonic()
        self._caught_up_event.set()
        self._settled.set()
        took = self.caught_up_at - (self.started_at or self.caught_up_at)
        log.info("verdict cache caught up: %d verdicts in %.3fs", len(self), took)


def _where(message: Any) -> tuple[str, int]:
    """A message's (topic, partition)."""
    return str(message.topic()), int(message.partition() or 0)
