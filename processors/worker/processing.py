"""Batch processing of metadata events, end to end, with no per-record awaits.

One call of :meth:`BatchProcessor.process` takes a batch of Kafka messages (single records or batch
envelopes) and:

1. reads the batch message by message: decodes it, checks its records against their contract (a
   compiled Rust validator answers "valid" for a whole envelope at once; only a message it does not
   pass gets the exact per-record checks, which name the path and the rule) and the admission rules
   (:mod:`processors.worker.admission`: the Kafka key, or in the per-tenant topic mode the topic,
   decides the tenant; canonical IPs; event time bounded by the broker's timestamp); a bad record
   is dead-lettered with its reason and position;
2. classifies each record (cached per build-bearing hop and day, so repeated headers cost nothing)
   and folds it at once into the server its headers name, within the tenant of its key: the
   message's decoded records are dropped before the next message is read, and nothing is built per
   record but an evidence candidate for a build-bearing one;
3. folds each server's records into Redis with one ``observe.lua`` call per server, all in one
   pipelined round trip that also reads the batch's tenant pauses;
4. evaluates each server's verdict at its latest event time and commits the changed ones
   (``commit_verdict.lua``: compare-and-set, sequence, outbox) in a second round trip, only when
   something changed;
5. publishes the outbox records and the dead letters, waits for the broker's acknowledgements,
   then clears the outboxes.

Failure isolation: an error in one record's decoding, admission, classification or grouping
dead-letters that record; one in folding it into its server, or in building or evaluating a
server's observation, dead-letters that server's records of the batch. The rest of the batch goes
on, so its verdicts are published once. Only Redis and Kafka failures stop the batch (it is retried
whole, see below).

Crash safety: a verdict is committed to Redis together with its outbox records before it is
published. Publishing claims an outbox exclusively (``claim_outbox.lua``), so two processes never
publish the same records; a crash before the claim leaves the records queued, and the next batch
of that server, start-up or the timer publishes them; a crash after the claim leaves an
in-flight list that the timer recovers, publishing only what Kafka does not already hold
(:meth:`processors.worker.runtime.WorkerRuntime.recover_abandoned_claims`). Replaying input after a crash re-runs steps
1-4 idempotently (HyperLogLog counts, event-time comparisons, fingerprint compare-and-set), so it
neither changes state nor commits a second verdict for the same transition.
"""

from __future__ import annotations

import gc
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from processors import metrics
from processors.classify import Classification, Connection, classify
from processors.classify.calendar import JudgementCalendar
from processors.classify.received import stamp_cache_key
from processors.contracts import ContractError, contracts
from processors.enforcement.pauses import PauseState
from processors.enforcement.policy import VULNERABLE_STATUSES
from processors.enforcement.verdicts import Evaluation, ServerState, evaluate
from processors.events.deadletter import dead_letter
from processors.events.metadata import (
    BadEnvelope,
    Client,
    MetadataRecord,
    metadata_items,
    record_parser,
)
from processors.events.wire import encode_event
from processors.kafka.delivery import KafkaOutput
from processors.kafka.verdict_routing import publication_topic
from processors.settings import Settings
from processors.state.keys import ServerField
from processors.state.model import SET_CAP, Commit, Observation, OutboxRecord, outbox_record
from processors.state.protocol import Store
from processors.worker.admission import (
    Refused,
    check_event_time,
    check_ip,
    event_time_limit,
    is_canonical_ip,
    is_host_name,
    is_server_name,
    key_parts,
    topic_tenant,
)
from processors.worker.policies import PolicySnapshot, PolicySource

log = logging.getLogger(__name__)

BUILD_BEARING = frozenset({"current", "behind", "unsupported", "unknown_build"})
HOP_CAP = 1000
CACHE_SIZE = 50_000


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None  # the broker's timestamp of the message (seconds), if it has one


@dataclass(slots=True)
class BatchStats:
    messages: int = 0
    records: int = 0
    dead_letters: int = 0
    servers: int = 0
    verdicts: int = 0
    notifications: int = 0
    server_key_mismatches: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    context_dropped: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    verdict_actions: dict[str, int] = field(default_factory=dict)
    redis_seconds: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Authority:
    """What a Kafka message's key (and topic) say about its records."""

    tenant_id: str
    server: str
    latest: datetime | None  # the latest event time its broker timestamp allows


def _identity(c: Classification) -> tuple[str, str | None, str]:
    """What makes two pieces of evidence the same: a run of them is reduced to its first."""
    return c.status, c.build, c.rule


@dataclass(slots=True)
class _ServerFold:
    """One server's records of the batch, folded in as they are read.

    Keeps what the observation needs and, per record, only references in flat lists: where it came
    from (to dead-letter the server's records if its observation cannot be built) and, for a
    build-bearing one, its evidence. No object is built per record (the cyclic collector would scan
    each one), and the decoded messages are dropped message by message.
    """

    server_key: str
    tenant_id: str
    server: str
    messages: list[RawMessage] = field(default_factory=list)  # per record: its message ...
    indexes: list[int | None] = field(default_factory=list)  # ... and its position in an envelope
    evidence_at: list[datetime] = field(default_factory=list)  # per build-bearing record
    evidence_ids: list[str] = field(default_factory=list)
    evidence_of: list[Classification] = field(default_factory=list)
    earliest: int = 0  # the build-bearing record first in event-time order (its position above)
    mixed: bool = False  # the build-bearing records do not all carry the same evidence
    first_at: datetime | None = None
    latest_at: datetime | None = None  # the latest record by (event time, event id)
    latest_id: str = ""
    latest_record: MetadataRecord | None = None
    latest_classification: Classification | None = None
    event_ids_by_day: dict[str, list[str]] = field(default_factory=dict)
    ips: dict[str, None] = field(default_factory=dict)
    helos: dict[str, None] = field(default_factory=dict)
    failure: Exception | None = None  # set: the server's records are dead-lettered

    def sources(self) -> list[tuple[RawMessage, int | None]]:
        return list(zip(self.messages, self.indexes, strict=True))

    def add(self, event: MetadataRecord, at: datetime, c: Classification) -> None:
        event_id = event["event_id"]
        if c.status in BUILD_BEARING:
            self._add_evidence(at, event_id, c)
        if self.first_at is None or at < self.first_at:
            self.first_at = at
        latest_at = self.latest_at
        if latest_at is None or at > latest_at or (at == latest_at and event_id >= self.latest_id):
            # a repeat of the latest (same time and id): the last one read, as a stable sort keeps it
            self.latest_at, self.latest_id, self.latest_record, self.latest_classification = at, event_id, event, c
        day = event["observed_at"][:10]
        ids = self.event_ids_by_day.get(day)
        if ids is None:
            self.event_ids_by_day[day] = [event_id]
        else:
            ids.append(event_id)
        client = event["client"]
        self.ips[client["ip"]] = None
        helo = client.get("helo")
        if helo:
            self.helos[helo] = None

    def _add_evidence(self, at: datetime, event_id: str, c: Classification) -> None:
        known = self.evidence_of
        if known:
            if not self.mixed and c is not known[0] and _identity(c) != _identity(known[0]):
                self.mixed = True
            first_at = self.evidence_at[self.earliest]
            if at < first_at or (at == first_at and event_id < self.evidence_ids[self.earliest]):
                self.earliest = len(known)
        self.evidence_at.append(at)
        self.evidence_ids.append(event_id)
        known.append(c)

    def evidence(self) -> list[dict[str, Any]]:
        """The build-bearing records in event-time order (then event id), each run of identical
        evidence reduced to its first record: one item when they all carry the same."""
        at, ids, of = self.evidence_at, self.evidence_ids, self.evidence_of
        if not of:
            return []
        if not self.mixed:
            return [evidence_item(of[self.earliest], at[self.earliest].timestamp())]
        items: list[dict[str, Any]] = []
        previous: tuple[Any, ...] | None = None
        for position in sorted(range(len(of)), key=lambda i: (at[i], ids[i])):
            identity = _identity(of[position])
            if identity != previous:
                previous = identity
                items.append(evidence_item(of[position], at[position].timestamp()))
        return items

    def observation(self) -> Observation:
        """The observation ``observe.lua`` folds in."""
        last, latest_c, latest_at = self.latest_record, self.latest_classification, self.latest_at
        assert last is not None and latest_c is not None and latest_at is not None and self.first_at is not None
        last_at = latest_at.timestamp()
        latest = {"at": last_at, "status": latest_c.status, "rule": latest_c.rule,
                  "connector_type": last["connector"]["type"], "helo": last["client"].get("helo") or ""}
        return Observation(
            server_key=self.server_key, tenant_id=self.tenant_id, server=self.server,
            first_at=self.first_at.timestamp(), last_at=last_at, evidence=self.evidence(), latest=latest,
            ips=list(self.ips)[:SET_CAP], helos=list(self.helos)[:SET_CAP], event_ids_by_day=self.event_ids_by_day,
        )


@dataclass(frozen=True, slots=True)
class CheckedMessage:
    """A metadata message whose records the caller decoded and checked against their contract, with
    each record's event time and its classification by :meth:`BatchProcessor.classify`
    (:meth:`BatchProcessor.process_checked`). ``message`` is where they came from (its key and
    topic are the authority; its value may be None: it is only quoted in dead letters)."""

    message: RawMessage
    records: Sequence[MetadataRecord]
    times: Sequence[datetime]
    classifications: Sequence[Classification]
    batch: bool  # an envelope: a record is dead-lettered with its index


def drop_unusable_names(client: Client, stats: BatchStats | None) -> None:
    """Admission's rule for context names: a HELO or PTR that is no host name is dropped (set to
    None, counted in ``stats``), the record kept."""
    for name in ("helo", "ptr"):
        value = client.get(name)
        if value is not None and not is_host_name(value):
            client[name] = None  # type: ignore[literal-required]  # context only: keep the record, drop the name
            if stats is not None:
                stats.context_dropped[name] = stats.context_dropped.get(name, 0) + 1


_NOT_DETECTED = frozenset({"current", *VULNERABLE_STATUSES})


def evidence_item(c: Classification, at: float) -> dict[str, Any]:
    """One build-bearing classification as ``observe.lua`` takes it."""
    return {
        "at": at,
        # a vulnerable version of a report-only product is no detection and clears an earlier one
        "vulnerable": 1 if c.enforceable else (0 if c.status in _NOT_DETECTED else -1),
        "fields": {
            "status": c.status, "rule": c.rule, "product": c.product_name, "build": c.build,
            "product_id": c.product, "version": c.version,
            "build_long": c.build_long, "release_name": c.release_name, "reason": c.reason,
            "recommended": orjson.dumps([r.to_json_dict() for r in c.recommended_builds]).decode(),
            "hop": (c.hop or "")[:HOP_CAP],
        },
    }


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a synchronous, allocation-heavy stretch.

    Decoding a message allocates thousands of dicts and lists; the collector's young-generation
    passes would re-scan the ones still alive. Parsed JSON holds no reference cycles, so reference
    counting frees it all as soon as the message is folded in (before the collector runs again:
    keeping a whole batch decoded until its end made the first pass after it cost ~50 ms).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _calendar_of(snapshot: PolicySnapshot) -> JudgementCalendar:
    """The days on which ``snapshot``'s catalogs and policy can change a classification."""
    return JudgementCalendar(snapshot.catalog, snapshot.classification, snapshot.products)


class BatchProcessor:
    def __init__(self, settings: Settings, store: Store, output: KafkaOutput, policies: PolicySource) -> None:
        self.settings = settings
        self.store = store
        self.output = output
        self.policies = policies
        # (topmost Received value, epoch of the day), and the HELO and IP too when they named the server
        self._cache: dict[tuple[Any, ...], Classification] = {}
        self._server_names: dict[str, str] = {}  # a classification's server -> the checked lower-case name
        self._cache_version = policies.current.version
        self._calendar = _calendar_of(policies.current)
        self._epoch_day, self._epoch = -1, -1  # the last day looked up in the calendar, and its epoch
        self._tenant_topic = re.compile(settings.metadata_topic_pattern) if settings.per_tenant_topics else None
        self._parse_record = record_parser()
        self._batch_valid = contracts.metadata_batch_fast
        self._record_valid = contracts.metadata_record_fast

    @staticmethod
    def record_admission_metrics(stats: BatchStats) -> None:
        """Count what admitting a finished batch's records noticed (see :mod:`processors.worker.admission`)."""
        if stats.server_key_mismatches:
            metrics.SERVER_KEY_MISMATCHES.inc(stats.server_key_mismatches)
        for name, count in stats.context_dropped.items():
            metrics.CONTEXT_DROPPED.labels(name).inc(count)

    # ------------------------------------------------------------------------------------ decoding

    def dead_letter(self, stats: BatchStats, message: RawMessage, error: str, path: str | None,
                     record_index: int | None, now: datetime) -> None:
        reason_kind = error.split(":", 1)[0] if path is None else "contract"
        stats.dead_letters += 1
        stats.dead_letter_reasons[reason_kind] = stats.dead_letter_reasons.get(reason_kind, 0) + 1
        record = dead_letter(topic=message.topic, partition=message.partition, offset=message.offset,
                             key=message.key, value=message.value, reason=error, path=path,
                             record_index=record_index, at=now)
        self.output.produce(self.settings.topic_deadletter, message.key, encode_event(record))

    def authority(self, message: RawMessage) -> Authority:
        """The tenant and server the message is keyed under; in the per-tenant mode the topic must agree."""
        tenant, server = key_parts(message.key)
        if self._tenant_topic is not None:
            owner = topic_tenant(message.topic, self._tenant_topic)
            if owner != tenant:
                raise Refused(f"tenant mismatch: the Kafka key names tenant {tenant!r}, "
                              f"the topic {message.topic!r} belongs to tenant {owner!r}")
        return Authority(tenant, server, event_time_limit(message.timestamp, self.settings.event_max_future_s))

    def _items(self, message: RawMessage, document: Any) -> tuple[list[Any], bool]:
        """The records of one decoded message and whether it is a batch envelope; :class:`Refused` if neither."""
        try:
            return metadata_items(document, message.key)
        except BadEnvelope as refusal:
            raise Refused(str(refusal), refusal.path) from None

    def _open(self, message: RawMessage, stats: BatchStats, now: datetime
              ) -> tuple[Authority, list[Any], bool, bool] | None:
        """A message's authority, records, whether it is an envelope and whether its records are
        certainly valid (the fast check passed the whole message); None once it is dead-lettered."""
        stats.messages += 1
        if message.value is None:
            self.dead_letter(stats, message, "empty: the message has no value", None, None, now)
            return None
        try:
            document = orjson.loads(message.value)
        except orjson.JSONDecodeError as error:
            self.dead_letter(stats, message, f"invalid JSON: {error}", None, None, now)
            return None
        try:
            authority = self.authority(message)
            items, batch = self._items(message, document)
        except Refused as refusal:
            self.dead_letter(stats, message, str(refusal), refusal.path, None, now)
            return None
        return authority, items, batch, (self._batch_valid if batch else self._record_valid)(document)

    def _check_cache_version(self) -> None:
        if self._cache_version != self.policies.current.version:
            self._cache.clear()
            self._cache_version = self.policies.current.version
            self._calendar = _calendar_of(self.policies.current)
            self._epoch_day = -1

    def _fold(self, messages: Sequence[RawMessage], stats: BatchStats, now: datetime) -> list[_ServerFold]:
        """Decode, check, classify and fold the batch, message by message, into one fold per server.

        A record that fails its contract, admission, classification or grouping is dead-lettered
        alone; a server whose fold fails, with all its records of the batch.
        """
        self._check_cache_version()
        folds: dict[str, _ServerFold] = {}
        for message in messages:
            opened = self._open(message, stats, now)
            if opened is None:
                continue
            authority, items, batch, checked = opened
            self._fold_items(folds, message, items, batch, authority, checked, stats, now)
        stats.records += sum(len(fold.messages) for fold in folds.values())
        return list(folds.values())

    def _fold_items(self, folds: dict[str, _ServerFold], message: RawMessage, items: Sequence[Any], batch: bool,
                    authority: Authority, checked: bool, stats: BatchStats, now: datetime,
                    times: Sequence[datetime] | None = None,
                    classified: Sequence[Classification] | None = None) -> None:
        """Each record of one message checked (unless ``checked``: the fast check passed them all),
        admitted, classified and folded into its server, or dead-lettered alone. ``times`` and
        ``classified`` (a :class:`CheckedMessage`'s): each record's event time and classification,
        already known.

        The hot loop (it runs once per record): lookups are hoisted, and consecutive records of one
        server (an envelope's, usually) reuse its fold without building its key again.
        """
        from_iso, parse, admit = datetime.fromisoformat, self._parse_record, self._admit
        classify_one, server_of, statuses = self._classify, self._server, stats.statuses
        fold: _ServerFold | None = None
        for position, item in enumerate(items):
            index = position if batch else None
            try:
                if not checked:
                    record, at = parse(item)
                else:
                    record, at = item, (from_iso(item["observed_at"]) if times is None else times[position])
                admit(record, at, authority, stats)
                classification = classify_one(record, at) if classified is None else classified[position]
                server = server_of(classification, authority.server, stats)
            except Exception as error:  # a bug too must cost this record only, never its neighbours
                self._refuse(stats, message, index, error, now)
                continue
            statuses[classification.status] = statuses.get(classification.status, 0) + 1
            if fold is None or fold.server != server:
                fold = self._fold_of(folds, authority.tenant_id, server)
            fold.messages.append(message)
            fold.indexes.append(index)
            if fold.failure is None:
                try:
                    fold.add(record, at, classification)
                except Exception as error:  # a bug must cost this server's records only
                    fold.failure = error

    @staticmethod
    def _fold_of(folds: dict[str, _ServerFold], tenant_id: str, server: str) -> _ServerFold:
        server_key = f"{tenant_id}/{server}"
        fold = folds.get(server_key)
        if fold is None:
            fold = folds[server_key] = _ServerFold(server_key, tenant_id, server)
        return fold

    def _refuse(self, stats: BatchStats, message: RawMessage, index: int | None, error: Exception,
                now: datetime) -> None:
        """Dead-letter one record: its contract violation (with its path), admission refusal or internal error."""
        if isinstance(error, ContractError):
            path = (f"$.records[{index}]" if index is not None else "$") + error.path[1:]
            self.dead_letter(stats, message, f"{path}: {error.reason}", path, index, now)
        elif isinstance(error, Refused):
            self.dead_letter(stats, message, str(error), None, index, now)
        else:
            self._internal_error(stats, [(message, index)], error, now)

    @staticmethod
    def _admit(event: MetadataRecord, at: datetime, authority: Authority, stats: BatchStats) -> None:
        """The rules the schema cannot say (see :mod:`processors.worker.admission`). Each check's
        usual answer is read inline (this runs once per record); the check itself speaks when it refuses."""
        if event["tenant_id"] != authority.tenant_id:
            raise Refused(f"tenant mismatch: the record's tenant_id {event['tenant_id']!r} differs from "
                          f"the tenant {authority.tenant_id!r} of its Kafka key (the key decides)")
        client = event["client"]
        if not is_canonical_ip(client["ip"]):
            check_ip(client["ip"])
        if authority.latest is not None:
            check_event_time(at, authority.latest)
        helo, ptr = client.get("helo"), client.get("ptr")
        if (helo is not None and not is_host_name(helo)) or (ptr is not None and not is_host_name(ptr)):
            drop_unusable_names(client, stats)

    # ------------------------------------------------------------------------------ classification

    def admit_one(self, event: MetadataRecord, at: datetime, authority: Authority,
                  stats: BatchStats) -> tuple[Classification, str]:
        """What a batch does with one contract-checked record before folding it: admission (its
        tenant against ``authority``, its IP, its event time; an unusable HELO/PTR dropped on
        ``event``), classification with the batch's cache, and the server it is kept under. Raises
        :class:`Refused` where the batch would dead-letter the record."""
        if self._cache_version != self.policies.current.version:
            self._check_cache_version()
        self._admit(event, at, authority, stats)
        classification = self._classify(event, at)
        return classification, self._server(classification, authority.server, stats)

    def _classify(self, event: MetadataRecord, at: datetime) -> Classification:
        """Classify one record; the result is shared by every record with the same topmost hop that day.

        The classifier decides from the topmost Received header alone (lower hops are context), so
        its text without the date's digits (:func:`stamp_cache_key`) and the epoch of the day (the
        stretch of days in which no status can change, :class:`JudgementCalendar`) are a sound cache
        key whenever the server was named by that hop (an Exchange or cloud stamp, whose meaning
        ends at the ``;``); when the connection named it (a stamp without a usable ``by`` host),
        the HELO and IP join the key. The cached result keeps the first record's hop text as its
        evidence.
        """
        headers: Sequence[tuple[str, str]] = event["headers"]  # type: ignore[assignment]  # [name, value] pairs
        top = None
        for name, value in headers:
            if len(name) == 8 and name.lower() == "received":
                top = value
                break
        client = event["client"]
        key: tuple[Any, ...] | None = None
        connection_key: tuple[Any, ...] | None = None
        if top is not None:
            day = at.toordinal()
            if day != self._epoch_day:  # most records fall on the day of the one before
                self._epoch_day, self._epoch = day, self._calendar.epoch(day)
            key = (stamp_cache_key(top), self._epoch)
            cached = self._cache.get(key)
            if cached is None:
                connection_key = (*key, client.get("helo"), client["ip"])
                cached = self._cache.get(connection_key)
            if cached is not None:
                return cached
        snapshot = self.policies.current
        result = classify(headers, Connection(ip=client["ip"], helo=client.get("helo")), at,
                          catalog=snapshot.catalog, policy=snapshot.classification, products=snapshot.products,
                          cached=False)  # this worker's own cache above, per snapshot
        if key is not None and connection_key is not None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            # a server named by the hop does not depend on the connection; one named by it does
            self._cache[key if result.server_source == "by" else connection_key] = result
        return result

    def _server(self, classification: Classification, key_server: str, stats: BatchStats) -> str:
        """The server the record is kept under: derived from its headers, within the key's tenant.

        A derived server that differs from the key's (an edge with another catalog, a HELO the edge
        used and the worker refused) is counted and wins: the server is not a trust boundary, the
        tenant is, and the worker's own classification is the one state is built on.
        """
        server = self._server_names.get(classification.server)
        if server is None:
            server = classification.server.lower()
            if not is_server_name(server):
                raise Refused(f"server name: the server named by the headers, {server[:120]!r}, is neither a "
                              "host name (LDH or IDNA, labels <= 63, <= 253 characters) nor an IP address")
            if len(self._server_names) >= CACHE_SIZE:
                self._server_names.clear()
            self._server_names[classification.server] = server
        if server != key_server:
            stats.server_key_mismatches += 1
        return server

    def _internal_error(self, stats: BatchStats, sources: Sequence[tuple[RawMessage, int | None]],
                        error: BaseException, now: datetime) -> None:
        log.error("dead-lettering %d record(s) after an internal error: %s: %s", len(sources),
                  type(error).__name__, error)
        for message, index in sources:
            self.dead_letter(stats, message, f"internal error: {type(error).__name__}: {error}", None, index, now)

    def _observations(self, folds: Sequence[_ServerFold], stats: BatchStats, now: datetime
                      ) -> list[tuple[_ServerFold, Observation]]:
        """One observation per server; a server whose fold or observation failed is dead-lettered alone."""
        folded: list[tuple[_ServerFold, Observation]] = []
        for fold in folds:
            try:
                if fold.failure is not None:
                    raise fold.failure
                folded.append((fold, fold.observation()))
            except Exception as error:  # a bug must cost this server's records only
                self._internal_error(stats, fold.sources(), error, now)
        return folded

    # ------------------------------------------------------------------------------------ the batch

    async def process(self, messages: Sequence[RawMessage], now: datetime | None = None,
                      progress: Mapping[str, int | str] | None = None) -> BatchStats:
        """Process one batch completely; raise (to be retried whole) if Redis or Kafka fails.

        ``progress`` marks are recorded in Redis, in the last round trip, once everything is published.
        """
        now = now or datetime.now(UTC)
        stats = BatchStats()
        with cyclic_gc_paused():
            folded = self._observations(self._fold(messages, stats, now), stats, now)
        return await self._settle(folded, stats, now, progress)

    async def process_checked(self, messages: Sequence[CheckedMessage], now: datetime | None = None,
                              progress: Mapping[str, int | str] | None = None) -> BatchStats:
        """:meth:`process` for messages the caller decoded, checked against their contract and
        classified (with :meth:`classify`): admission, folding, state, verdicts and publishing as
        for any batch, without decoding, checking or classifying a record again."""
        now = now or datetime.now(UTC)
        stats = BatchStats()
        self._check_cache_version()
        with cyclic_gc_paused():
            folds: dict[str, _ServerFold] = {}
            for checked in messages:
                stats.messages += 1
                try:
                    authority = self.authority(checked.message)
                except Refused as refusal:
                    self.dead_letter(stats, checked.message, str(refusal), refusal.path, None, now)
                    continue
                self._fold_items(folds, checked.message, checked.records, checked.batch, authority, True, stats,
                                 now, checked.times, checked.classifications)
            stats.records += sum(len(fold.messages) for fold in folds.values())
            folded = self._observations(list(folds.values()), stats, now)
        return await self._settle(folded, stats, now, progress)

    async def _settle(self, folded: list[tuple[_ServerFold, Observation]], stats: BatchStats, now: datetime,
                      progress: Mapping[str, int | str] | None) -> BatchStats:
        """Steps 3-5 of a batch: fold the observations into the store, evaluate, commit, publish."""
        stats.servers = len(folded)
        if not folded:
            await self.output.flush()
            await self.store.release([], self.settings.topic_notifications, progress)
            return stats
        observations = [observation for _, observation in folded]
        started = time.perf_counter()
        states, pauses = await self.store.observe(observations, {o.tenant_id for o in observations})
        stats.redis_seconds.append(("observe", time.perf_counter() - started))
        evaluations, leftovers = self._evaluate_all(folded, states, pauses, stats, now)
        await self.commit(evaluations, stats, extra_outboxes=leftovers, progress=progress)
        return stats

    def _evaluate_all(self, folded: Sequence[tuple[_ServerFold, Observation]], states: Sequence[tuple[Any, ...]],
                      pauses: Mapping[str, PauseState], stats: BatchStats, now: datetime
                      ) -> tuple[list[tuple[dict[str, str], Evaluation]], list[str]]:
        """Each server's verdict at its latest event time; a server whose evaluation fails is dead-lettered alone.

        Also returns the outboxes a crashed run committed but did not publish.
        """
        policy = self.policies.current.enforcement
        evaluations = []
        leftovers = []
        for (fold, obs), (fields, ips, outbox_length) in zip(folded, states, strict=True):
            if outbox_length:
                leftovers.append(self.store.keys.server_outbox(obs.server_key))
            try:
                state = ServerState.from_hash(obs.server_key, fields, ips)
                pause = pauses.get(obs.tenant_id, PauseState())
                evaluation = evaluate(state, policy, pause, datetime.fromtimestamp(obs.last_at, UTC))
            except Exception as error:  # a bug must cost this server's records only
                self._internal_error(stats, fold.sources(), error, now)
                continue
            evaluations.append((fields, evaluation))
        return evaluations, leftovers

    async def commit(self, evaluations: Sequence[tuple[dict[str, str], Evaluation]], stats: BatchStats,
                     force_due: bool = False, extra_outboxes: Sequence[str] = (),
                     progress: Mapping[str, int | str] | None = None) -> None:
        """Commit what changed, publish it, confirm delivery. Shared by the timer and commands."""
        topic_notifications = self.settings.topic_notifications
        commits: list[Commit] = []
        once: list[tuple[str, str, bytes]] = []
        due: list[tuple[str, float]] = []
        for fields, evaluation in evaluations:
            server_key = f"{fields.get(ServerField.TENANT_ID)}/{fields.get(ServerField.SERVER)}"
            if evaluation.fingerprint is not None and evaluation.fingerprint != fields.get(ServerField.FINGERPRINT):
                assert evaluation.verdict_prefix is not None and evaluation.verdict_suffix is not None
                tenant = fields[ServerField.TENANT_ID]
                commits.append(Commit(
                    server_key=server_key, fingerprint=evaluation.fingerprint,
                    verdict_prefix=evaluation.verdict_prefix,
                    verdict_suffix=evaluation.verdict_suffix,
                    issued_at=evaluation.at.timestamp(),
                    stage=evaluation.stage, kafka_key=server_key, action=evaluation.action,
                    history=orjson.dumps(evaluation.history),
                    notifications=[outbox_record(topic_notifications, tenant, encode_event(n))
                                   for n in evaluation.notifications],
                ))
            for notification in evaluation.once_notifications:  # emit_once.lua drops repeats
                once.append((server_key, notification["notification_id"],
                             outbox_record(topic_notifications, fields[ServerField.TENANT_ID],
                                           encode_event(notification))))
            if evaluation.next_due is not None:
                when = evaluation.next_due.timestamp()
                if force_due or fields.get(ServerField.DUE_AT) != repr(when):
                    due.append((server_key, when))
        outboxes = set(extra_outboxes)
        outboxes |= {self.store.keys.server_outbox(c.server_key) for c in commits}
        outboxes |= {self.store.keys.server_outbox(k) for k, _, _ in once}
        claimed: list[OutboxRecord] = []
        if commits or once or due or outboxes:
            started = time.perf_counter()
            sequences, claimed = await self.store.commit(commits, once, due, self.settings.topic_verdicts,
                                                         claim=sorted(outboxes), now=time.time())
            stats.redis_seconds.append(("commit", time.perf_counter() - started))
            committed = [c for c, seq in zip(commits, sequences, strict=True) if seq]
            stats.verdicts += len(committed)
            for commit in committed:
                stats.verdict_actions[commit.action] = stats.verdict_actions.get(commit.action, 0) + 1
        await self.send(claimed, stats, progress)

    async def send(self, claimed: Sequence[OutboxRecord], stats: BatchStats,
                   progress: Mapping[str, int | str] | None = None) -> None:
        """Publish claimed records (and anything produced before, e.g. dead letters), then release."""
        for record in claimed:
            if record.topic == self.settings.topic_notifications:
                stats.notifications += 1
            self.output.produce(publication_topic(self.settings, record.topic, record.key), record.key, record.value)
        await self.output.flush()
        await self.store.release(claimed, self.settings.topic_notifications, progress)

    async def publish(self, outboxes: Sequence[str], stats: BatchStats) -> None:
        """Claim the outboxes (exclusive), publish their records, then release them."""
        await self.send(await self.store.claim(outboxes, time.time()) if outboxes else [], stats)

    async def flush_outboxes(self) -> None:
        """Publish every outbox that is queued and not claimed (records a crashed run committed)."""
        await self.publish(await self.store.pending_outboxes(), BatchStats())
