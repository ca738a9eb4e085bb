"""The simulation: recorded metadata through the worker's own logic, each message answered by the
edge's own decision, one pass, memory bounded by the number of servers.

The same code, not a second model. Records go, in batches, through the
:class:`~processors.worker.inprocess.InProcessWorker` (the worker's ``BatchProcessor``, operator
commands and timer, on an in-memory store); every verdict it publishes is compiled and applied by
the edge's :class:`~edge.verdicts.VerdictIndex`, and every message is answered by
:func:`edge.verdicts.message_decision`, the function the milter answers with (connector scope,
the message's own build, then the verdict's window at the message's time and the server's window
offset). The stage table, pauses, windows and replies are nowhere re-stated here.

The model of time (what the equivalence tests hold the real worker and edge to):

- Events happen in event-time order: records by ``observed_at`` (ties by ``event_id``, as the
  worker sorts a batch), pause commands by ``issued_at``, the timer's due work (stage starts,
  notices, pause ends) at its due time. At one instant, due work and commands come first.
- The worker keeps up: a verdict is in force at the edge from the moment it is issued. A message
  is answered by the verdicts issued before it, never by the one it causes itself (the edge
  answers before it publishes the message's metadata), so the first vulnerable message of a server
  is accepted and the next is judged by the new verdict. The timer is on time: a stage starts at
  the edges at 00:00 UTC of its day, a pause ends at its end. (A real worker's timer may run a
  little later; a verdict's ``valid_until`` and ``paused_until`` make the edge change its answer at
  the same instants regardless.)
- Every recorded message feeds the worker, whatever the edge answered: an edge publishes the
  metadata of every message it sees, before it replies. A deferred message that its sender
  retries later is a new message of the recording, not predicted here.
- The edge's client-IP hint (a server named only by HELO or IP borrowing the verdict of a server
  with that IP) is not simulated: every message is answered by the server its headers name.
- ``--enforce-from``: patchgate starts then; earlier records and commands are not simulated
  (counted as such), so detection clocks start at the first record from that instant on.

Batching without changing any answer: a batch (window) never spans a due item, a command or
00:00 UTC, and holds at most one record per server that may change the server's state (its first,
or one whose classification or connector type differs from the server's previous record): any
record of that server after it starts a new batch. All other records fold into the state without
changing a verdict (same evidence, stage already moved by the timer), so answering every record of
a batch with the verdicts in force before the batch gives each message exactly what one record at
a time would (a property test checks this against one-record batches).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import orjson

from edge.verdicts import BadVerdict, VerdictIndex, compile_verdict, message_decision
from processors.classify import Classification, Connection, server_key
from processors.contracts import ContractError, contracts
from processors.events.command import parse_command
from processors.events.metadata import record_parser
from processors.settings import Settings
from processors.state.memory import MemoryStateStore
from processors.whatif.model import Prediction, answer_of
from processors.whatif.sources import Item, Skip
from processors.worker.inprocess import CheckedMessage, InProcessWorker, RawMessage

WINDOW_MAX = 2000  # records per batch
ENVELOPE_MAX = 1000  # records per envelope (the contract's maxItems)
REORDER = 20_000  # records held to restore event-time order across partitions or edges


class _StreamingStore(MemoryStateStore):
    """The in-memory store without per-day message ids: they serve the report's counts only, and
    would make memory grow with every record. Everything a verdict depends on is kept. Emptied
    containers are dropped once per batch (:meth:`Simulation._flush`), not after every operation:
    the scan over every key would cost more than the rest of the simulation."""

    def __init__(self) -> None:
        super().__init__(prune_every=1_000_000_000, keep_message_ids=False)


@dataclass(slots=True)
class _Entry:
    where: str
    key: str  # the server key the record was published under: the tenant's authority
    record: Any
    at: datetime
    server_key: str  # the server its headers name: what the worker keeps state and verdicts under
    classification: Classification  # the worker's own, handed back to it with the record
    answer: int  # index in model.ANSWERS
    serial: int  # the record's position in the input


@dataclass(frozen=True, slots=True)
class Command:
    at: datetime
    where: str
    message: RawMessage


def parse_commands(lines: Iterable[tuple[str, bytes]], topic: str, prediction: Prediction) -> list[Command]:
    """Pause commands (``patchgate.command/1``, one JSON object a line), checked, in time order;
    a bad line is a listed skip."""
    commands: list[Command] = []
    for where, line in lines:
        try:
            document = orjson.loads(line)
            tenant = document.get("tenant_id") if isinstance(document, dict) else None
            key = tenant.encode() if isinstance(tenant, str) else None
            command = parse_command(line, key)
        except orjson.JSONDecodeError as error:
            prediction.skip(where, f"invalid JSON: {error}")
            continue
        except ContractError as error:
            prediction.skip(where, f"command: {error}")
            continue
        except ValueError as error:  # CommandKeyMismatch and the like
            prediction.skip(where, f"command: {error}")
            continue
        at = datetime.fromisoformat(command["issued_at"])
        commands.append(Command(at, where, RawMessage(topic, 0, len(commands), key, line)))
    commands.sort(key=lambda c: c.at)
    return commands


class Simulation:
    """One run: feed it records (and commands), get a :class:`Prediction`."""

    def __init__(self, *, policy_file: Path | None = None, catalog_file: Path | None = None,
                 products_dir: Path | None = None, enforce_from: datetime | None = None,
                 settings: Settings | None = None, on_record: Callable[[int], None] | None = None,
                 on_answer: Callable[[int, str, int | None], None] | None = None) -> None:
        self.settings = settings or Settings.from_env({})
        self.prediction = Prediction(enforce_from=enforce_from)
        self.store = _StreamingStore()
        self.worker = InProcessWorker(self.settings, self.store, self._published, policy_file=policy_file,
                                      catalog_file=catalog_file, products_dir=products_dir)
        snapshot = self.worker.policy
        self._snapshot = snapshot
        self._scope = snapshot.enforcement.enforced_connector_types
        self.index = VerdictIndex()
        self.index.caught_up = True  # the simulated edge has read every verdict issued so far
        self._signatures: dict[str, tuple[Any, ...]] = {}
        self._window: list[_Entry] = []
        self._changers: set[str] = set()
        self._limit = -math.inf  # the current window ends before this epoch second
        self._envelopes: dict[int, list[_Entry]] = {}
        self._offset = 0
        self._dead: list[dict[str, Any]] = []
        self._commands: deque[Command] = deque()
        self._on_record = on_record
        self._on_answer = on_answer  # (serial, server key, answer or None when refused)

    # ------------------------------------------------------------------------------------ the run

    async def run(self, items: Iterable[Item | Skip], commands: Sequence[Command] = ()) -> Prediction:
        """Simulate everything ``items`` holds; skips are listed in the prediction."""
        self.start(commands)
        for held in ordered_records(items, self.prediction):
            await self.record(held)
        return await self.finish()

    def start(self, commands: Sequence[Command]) -> None:
        start = self.prediction.enforce_from
        self._commands = deque(c for c in commands if start is None or c.at >= start)
        self.prediction.before_enforce_from += len(commands) - len(self._commands)

    async def finish(self) -> Prediction:
        await self._flush()
        if self.prediction.last_at is not None:  # commands and due work up to the last message
            await self._advance(self.prediction.last_at)
        return self.prediction

    # -------------------------------------------------------------------------------- one record

    async def record(self, held: Held) -> None:
        """One record, in event-time order (:func:`ordered_records`)."""
        at, item, record, serial = held
        tenant = (item.key or record["tenant_id"]).partition("/")[0]
        c, key = self._classified(record, at, tenant)
        at_s = at.timestamp()
        if self._window and (at_s >= self._limit or key in self._changers or len(self._window) >= WINDOW_MAX):
            await self._flush()
        if not self._window:
            await self._advance(at)
            self._limit = await self._next_limit(at)
        signature = (c.status, c.rule, c.build, c.version, c.product, c.enforced, record["connector"]["type"])
        if self._signatures.get(key) != signature:
            self._signatures[key] = signature
            self._changers.add(key)
        decision = message_decision(self.index, key, at_s, in_scope=record["connector"]["type"] in self._scope,
                                    status=c.status)
        answer = answer_of(decision.action, decision.shadow_reply)
        self._window.append(_Entry(item.where, item.key or key, record, at, key, c, answer, serial))
        result = self.prediction.server(key)
        result.seen(c.product, c.version or c.build)
        prediction = self.prediction
        prediction.records += 1
        if prediction.first_at is None:
            prediction.first_at = at
        prediction.last_at = at
        if self._on_record is not None:
            self._on_record(prediction.records)

    def _classified(self, record: Any, at: datetime, tenant: str) -> tuple[Classification, str]:
        """The worker's own classification of the record (its classifier and cache, after admission
        drops an unusable HELO), handed back to it with the record so that it is classified once;
        and the server key it names within ``tenant``."""
        c = self.worker.classify(record, at)
        if c.server:
            return c, f"{tenant}/{c.server.lower()}"
        client = record["client"]
        return c, server_key(tenant, c, Connection(ip=client["ip"], helo=client.get("helo")))

    # --------------------------------------------------------------------------- time and batches

    async def _advance(self, at: datetime) -> None:
        """Commands issued and due work falling at or before ``at``, each at its own time."""
        while self._commands and self._commands[0].at <= at:
            command = self._commands.popleft()
            await self.worker.advance(command.at)
            await self.worker.command(command.message)
            self.prediction.commands += 1
            self._settle_dead({command.message.offset: []}, command.where)
        await self.worker.advance(at)

    async def _next_limit(self, at: datetime) -> float:
        """Where the window starting at ``at`` must end: 00:00 UTC next, the next command or due item."""
        limit = datetime.combine(at.astimezone(UTC).date() + timedelta(days=1), time(0), tzinfo=UTC).timestamp()
        if self._commands:
            limit = min(limit, self._commands[0].at.timestamp())
        due = await self.store.due_items(limit, 1)
        return min(limit, due[0][1]) if due else limit

    async def _flush(self) -> None:
        if not self._window:
            return
        by_key: dict[str, list[_Entry]] = {}
        for entry in self._window:
            by_key.setdefault(entry.key, []).append(entry)
        messages = []
        topic = self.settings.topic_metadata
        for key, entries in by_key.items():
            for start in range(0, len(entries), ENVELOPE_MAX):
                chunk = entries[start:start + ENVELOPE_MAX]
                self._offset += 1
                self._envelopes[self._offset] = chunk
                messages.append(CheckedMessage(
                    message=RawMessage(topic, 0, self._offset, key.encode(), None), batch=True,
                    records=[e.record for e in chunk], times=[e.at for e in chunk],
                    classifications=[e.classification for e in chunk]))
        await self.worker.process_checked(messages)
        self.store.prune()
        refused = self._settle_dead(self._envelopes, None)
        days: dict[date, str] = {}
        servers = self.prediction.servers
        for entry in self._window:
            answered = id(entry) not in refused
            if answered:
                day = entry.at.date()
                text = days.get(day)
                if text is None:
                    text = days[day] = entry.at.strftime("%Y-%m-%d")
                servers[entry.server_key].count(text, entry.answer)
            if self._on_answer is not None:
                self._on_answer(entry.serial, entry.server_key, entry.answer if answered else None)
        self._window.clear()
        self._changers.clear()
        self._envelopes.clear()

    def _settle_dead(self, sent: dict[int, list[_Entry]], where: str | None) -> set[int]:
        """Records (or commands) the worker dead-lettered become listed skips; returns their entries' ids."""
        refused: set[int] = set()
        for letter in self._dead:
            source = letter["source"]
            entries = sent.get(source["offset"], [])
            index = source.get("record_index")
            hit = entries if index is None else entries[index:index + 1]
            for entry in hit:
                refused.add(id(entry))
                self.prediction.skip(entry.where, f"refused by the worker: {letter['reason']}")
                self._signatures.pop(entry.server_key, None)  # its next record is judged afresh
                self.prediction.records -= 1
            if where is not None:
                self.prediction.skip(where, f"refused by the worker: {letter['reason']}")
        self._dead.clear()
        return refused

    # ------------------------------------------------------------------------ what the worker sends

    def _published(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        if topic == self.settings.topic_verdicts:
            self._verdict(key, value)
        elif topic == self.settings.topic_deadletter:
            self._dead.append(orjson.loads(value))

    def _verdict(self, key: bytes | None, value: bytes) -> None:
        record = orjson.loads(value)
        try:
            verdict = compile_verdict(record, key=key.decode() if key is not None else None)
        except BadVerdict as error:  # the worker's own verdicts always compile: a bug, not input
            raise AssertionError(f"the worker published a verdict the edge refuses: {error}") from error
        self.index.apply(verdict)
        paused = record.get("paused_until")
        self.prediction.server(verdict.server_key).verdict(
            at=datetime.fromisoformat(record["issued_at"]), stage=verdict.stage,
            throttle=record.get("throttle_minutes", 0), block=record.get("block_minutes", 0),
            paused_until=datetime.fromisoformat(paused) if paused else None, shadow=verdict.shadow)


Held = tuple[datetime, Item, Any, int]  # (event time, where from, the checked record, serial)


def ordered_records(items: Iterable[Item | Skip], prediction: Prediction) -> Iterator[Held]:
    """Records that pass their contract, in event-time order (ties by ``event_id``), restored within
    a window of :data:`REORDER` records; one that comes later than that is skipped and listed (never
    silently dropped or misplaced), as is every unreadable line and every record refused by its
    contract. Records before ``prediction.enforce_from`` are counted and left out.

    A held record waits as its JSON, not as decoded objects: tens of thousands of live dicts that
    each survive into the oldest generation would make every pass of the cyclic collector scan them.
    """
    heap: list[_Waiting] = []
    last: tuple[datetime, str] | None = None
    for at, event_id, serial, item, record in _checked(items, prediction):
        heapq.heappush(heap, (at, event_id, serial, item.where, item.key, _packed(record)))
        if len(heap) > REORDER:
            last = yield from _release(heapq.heappop(heap), last, prediction)
    while heap:
        last = yield from _release(heapq.heappop(heap), last, prediction)


_Waiting = tuple[datetime, str, int, str, str | None, Any]  # (time, event id, serial, where, key, record)


def _packed(record: Any) -> Any:
    """A checked record as the bytes that decode to it again (the record itself if it has no such bytes)."""
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError:
        return record


def _checked(items: Iterable[Item | Skip], prediction: Prediction) -> Iterator[tuple[datetime, str, int, Item, Any]]:
    parse, valid, from_iso = record_parser(), contracts.metadata_record_fast, datetime.fromisoformat
    start = prediction.enforce_from
    serial = 0
    for item in items:
        if isinstance(item, Skip):
            prediction.skip(item.where, item.reason)
            continue
        try:  # the compiled check says "valid" at once; a record it does not pass gets the exact one
            record, at = (item.record, from_iso(item.record["observed_at"])) if valid(item.record) \
                else parse(item.record)
        except ContractError as error:
            prediction.skip(item.where, f"contract: {error.path}: {error.reason}")
            continue
        if start is not None and at < start:
            prediction.before_enforce_from += 1
            continue
        serial += 1
        yield at, record["event_id"], serial, item, record


def _release(held: _Waiting, last: tuple[datetime, str] | None,
             prediction: Prediction) -> Generator[Held, None, tuple[datetime, str] | None]:
    at, event_id, serial, where, key, packed = held
    if last is not None and at < last[0]:  # at one instant, a smaller event_id late is only a tie broken late
        prediction.skip(where, f"out of time order: observed_at {at.isoformat()} comes more than {REORDER} "
                        f"records after later ones (from {last[0].isoformat()}); sort the input by observed_at")
        return last
    record = orjson.loads(packed) if type(packed) is bytes else packed
    yield at, Item(where, key, record), record, serial
    return max(last, (at, event_id)) if last is not None else (at, event_id)
