"""The worker's logic run inside another program: batches, operator commands and the timer, on a
state store the caller gives, with what the worker would publish handed to a callback.

This is the public door for tools that must answer exactly as the worker does without Kafka or
Redis (``patchgate whatif``): they get the same :class:`~processors.worker.runtime.WorkerRuntime`
and :class:`~processors.worker.processing.BatchProcessor` the ``patchgate worker`` process runs,
so every change of the worker's processing reaches them. Nothing else of the worker package is
meant to be imported from outside it (``tests/test_layering.py``).

Time is the caller's: :meth:`InProcessWorker.advance` runs the timer's due work up to an instant
of event time (each due item evaluated at its own time, as the worker's timer does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from processors.classify import Classification
from processors.enforcement.pauses import PauseOutcome
from processors.events.metadata import MetadataRecord
from processors.kafka.delivery import KafkaOutput
from processors.settings import Settings
from processors.state.protocol import Store
from processors.worker.admission import Refused, check_event_time, event_time_limit
from processors.worker.policies import PolicySnapshot, PolicySource
from processors.worker.processing import Authority, BatchStats, CheckedMessage, RawMessage
from processors.worker.runtime import WorkerRuntime

__all__ = [
    "BatchStats", "CheckedMessage", "InProcessWorker", "PolicySnapshot", "Published", "RawMessage", "Refused",
    "load_policy_snapshot",
]
#: ``Refused``: what :meth:`InProcessWorker.admit` raises where the worker would dead-letter a record

AUTHORITIES_KEPT = 65_536  # parsed Kafka keys remembered by :meth:`InProcessWorker.admit` (then forgotten)

#: what the worker publishes: (topic, key, value), in the order it would reach Kafka
Published = Callable[[str, bytes | None, bytes | None], None]


class _CallbackOutput(KafkaOutput):
    """The producer's interface without a producer: records reach ``deliver`` when flushed."""

    def __init__(self, deliver: Published) -> None:  # no librdkafka client: nothing is sent
        self._deliver = deliver
        self._pending: list[tuple[str, bytes | None, bytes | None]] = []
        self.delivered = 0

    def produce(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self._pending.append((topic, key, value))

    async def flush(self, timeout: float = 30.0) -> None:
        records, self._pending = self._pending, []
        for topic, key, value in records:
            self._deliver(topic, key, value)
        self.delivered += len(records)


@dataclass
class _SetClock:
    at: datetime | None = None

    async def now(self) -> datetime | None:
        return self.at


def load_policy_snapshot(policy_file: Path | None = None, catalog_file: Path | None = None,
                         products_dir: Path | None = None) -> PolicySnapshot:
    """The catalog, product catalogs and policy the worker would load from these files (None: packaged).

    Raises the loaders' errors (``PolicyError``, ``CatalogFormatError``, ``ProductCatalogError``, ``OSError``)."""
    return PolicySource(policy_file, catalog_file, products_dir=products_dir).current


class InProcessWorker:
    """One worker's batch, command and timer logic on ``store``; published records go to ``publish``."""

    def __init__(self, settings: Settings, store: Store, publish: Published, *, policy_file: Path | None = None,
                 catalog_file: Path | None = None, products_dir: Path | None = None) -> None:
        # files are read once: a simulation runs under one version of them
        policies = PolicySource(policy_file, catalog_file, check_interval=float("inf"), products_dir=products_dir)
        self._clock = _SetClock()
        self.runtime = WorkerRuntime(settings, store, _CallbackOutput(publish), policies, self._clock)
        self.runtime.ready.set()  # start() would freeze the collector: not for a host program
        self.store = store
        self.settings = settings
        # by Kafka key (or by tenant for a keyless record), with the topic when one was named
        self._authorities: dict[object, Authority] = {}
        self._admission_stats = BatchStats()  # what admitting noticed (dropped names): not reported

    @property
    def policy(self) -> PolicySnapshot:
        """The catalog and policies the worker judges by."""
        return self.runtime.policies.current

    async def process(self, messages: Sequence[RawMessage]) -> BatchStats:
        """One batch of metadata messages, processed and published as the worker does."""
        return await self.runtime.process_batch(messages)

    def admit(self, record: MetadataRecord, at: datetime, key: bytes | None, topic: str | None = None,
              timestamp: float | None = None) -> tuple[Classification, str]:
        """A contract-checked record (event time ``at``) admitted and classified exactly as the
        worker's batch does before folding it: ``(classification, server)``, the server being the
        one the worker keeps state and verdicts under within the tenant. ``key`` is the Kafka key
        it was published under (the authority for the tenant) and ``topic`` the topic (None: the
        metadata topic; in the per-tenant topic mode it must name the key's tenant); ``key`` None
        for a record read without one, whose own ``tenant_id`` then stands. ``timestamp``: the
        broker's timestamp of its message (seconds), which bounds its event time as in the worker.
        Raises :class:`Refused` with the reason the worker would dead-letter it with. Hand the
        classification back in a :class:`CheckedMessage` and the record is classified once."""
        if timestamp is not None:
            check_event_time(at, event_time_limit(timestamp, self.settings.event_max_future_s))
        lookup: object = key if key is not None else record["tenant_id"]
        if topic is not None:
            lookup = (topic, lookup)
        authority = self._authorities.get(lookup)
        if authority is None:
            message = RawMessage(topic or self.settings.topic_metadata, 0, 0, key, None)
            authority = (self.runtime.processor.authority(message) if key is not None
                         else Authority(record["tenant_id"], "", None))
            if len(self._authorities) >= AUTHORITIES_KEPT:
                self._authorities.clear()
            self._authorities[lookup] = authority
        return self.runtime.processor.admit_one(record, at, authority, self._admission_stats)

    async def process_checked(self, messages: Sequence[CheckedMessage]) -> BatchStats:
        """:meth:`process` for records already decoded, checked against their contract and classified
        (:meth:`admit`): the worker's admission, folding, state, verdicts and publishing, without
        the records being encoded and decoded again."""
        return await self.runtime.process_checked_batch(messages)

    async def command(self, message: RawMessage) -> PauseOutcome | None:
        """One operator command (``patchgate.command/1``); a rejected one is dead-lettered."""
        return await self.runtime.process_command(message)

    async def advance(self, at: datetime) -> int:
        """Run the timer's work due at or before ``at``; returns the number of due items handled."""
        self._clock.at = at
        return await self.runtime.tick()
