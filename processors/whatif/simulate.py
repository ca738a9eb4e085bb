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

Only what can change a verdict goes through the worker. A record whose classification and
connector type equal its server's previous record's (a *repeat*, most of any recording) cannot
change that server's verdict: the worker would fold it into counters, sets and last-seen times,
none of which a verdict's fingerprint, its stage clock or the edge's answer depends on; every
change in time (a stage starting, a notice, a pause ending) is the timer's due work, run at its
own time. So a repeat is admitted and classified by the worker's own code (a record it would
refuse is a listed skip), answered by the edge decision and counted, and is not folded in. A
*changer* (a server's first record, or one whose classification or connector type differs) goes
to the worker; changers of different servers wait together until the next record of one of their
servers, a due item, a command or 00:00 UTC, and each is answered with the verdicts in force
before it. The property test holds this against the worker fed every record, one at a time
(answers, stage changes and pauses alike).
"""

from __future__ import annotations

import gc
import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from edge.verdicts import BadVerdict, VerdictIndex, compile_verdict, message_decision
from processors.classify import Classification
from processors.contracts import ContractError, contracts
from processors.events.command import parse_command
from processors.events.metadata import record_parser
from processors.settings import Settings
from processors.state.memory import MemoryStateStore
from processors.whatif.model import ACTION_ANSWER, Prediction, ServerResult, answer_of
from processors.whatif.sources import Item, Skip
from processors.worker.inprocess import CheckedMessage, InProcessWorker, RawMessage, Refused

WINDOW_MAX = 2000  # changers waiting for the worker at most
REORDER = 20_000  # records held to restore event-time order across partitions or edges
RELEASE_RUN = 4096  # records released together once that many more than REORDER wait
DAY_S = 86_400
PAIRS_KEPT = 65_536  # (classification, server key) pairs remembered while admitting (then forgotten)
COLLECT_EVERY = 250_000  # records between two passes of the cyclic garbage collector


class _StreamingStore(MemoryStateStore):
    """The in-memory store without per-day message ids: they serve the report's counts only, and
    would make memory grow with every record. Everything a verdict depends on is kept. Emptied
    containers are dropped after each batch (:meth:`Simulation._flush`), not after every operation:
    the scan over every key would cost more than the rest of the simulation."""

    def __init__(self) -> None:
        super().__init__(prune_every=1_000_000_000, keep_message_ids=False)


#: one simulation's view of a record: the worker's classification and the server key it keeps it under
Admitted = tuple[Classification, str]


class Held(NamedTuple):
    """A checked, admitted record waiting for its turn in event-time order. A tuple whose first
    three fields are its position in that order: (time, event id, serial) is unique, so records
    compare by it alone."""

    at_s: float  # its ``observed_at`` in epoch seconds
    event_id: str
    serial: int  # its position among the input's checked records, from 1
    at: datetime
    where: str
    key: bytes | None  # the Kafka key (or envelope server key) it was published under
    payload: bytes  # its JSON, decoded again only if it goes to the worker
    connector: str  # its connector type
    admitted: tuple[Admitted, ...]  # per simulation, in the order :func:`simulate` was given them
    topic: str | None  # the Kafka topic it was read from (the authority for its tenant in the per-tenant mode)
    stamp: float | None  # its Kafka message's broker timestamp (bounds its event time, as in the worker)


@dataclass(slots=True)
class _Changer:
    held: Held
    classification: Classification
    server_key: str
    answer: int
    before: tuple[tuple[Held, Classification], ...]  # folded in first, already answered and counted


@dataclass(slots=True)
class _Track:
    """Which of a server's records the worker must see (see the module's docstring).

    The worker folds a record by event-time comparisons that are strict at one instant (a
    vulnerable build at the very instant of a current one detects nothing). So a record repeats
    its server's class only once that class took effect: its last record sent to the worker was
    alone at its instant, or a later instant of that class was sent since. And a changer at the
    instant of the last skipped repeat takes that repeat with it, so the worker sees the tie.
    """

    result: ServerResult
    classification: Classification  # the class of the server's last record ...
    connector: str  # ... and its connector type
    last_at_s: float  # the instant of its last record
    sent_at_s: float = -math.inf  # the instant of the class's last record sent to the worker
    tied: bool = False  # that instant also holds a record of another class
    skipped: Held | None = None  # the class's last record not sent ...
    skipped_as: Classification | None = None  # ... and its classification
    day_start: float = -math.inf  # the day counted in last: its first and ...
    day_end: float = -math.inf  # ... the next day's first epoch second (none yet: an empty range) ...
    counts: list[int] = field(default_factory=list)  # ... and its counts

    def repeated_by(self, held: Held, c: Classification) -> bool:
        """Whether the record may stay away from the worker; the caller then notes it as skipped
        (:meth:`Simulation.answer`, which tests the usual case, the same class object, first)."""
        if held.connector != self.connector or (self.tied and held.at_s > self.sent_at_s):
            return False
        if self.classification is not c:
            if not _same_class(self.classification, c):
                return False
            self.classification = c  # the same class: the next record of the epoch compares by identity
        return True

    def changed_by(self, held: Held, c: Classification) -> tuple[tuple[Held, Classification], ...]:
        """Note a record the worker must see; returns the skipped repeat it must see first, if any."""
        skipped, skipped_as = self.skipped, self.skipped_as
        before = ((skipped, skipped_as),) if skipped is not None and skipped_as is not None \
            and skipped.at_s == held.at_s else ()
        new_class = held.connector != self.connector or not (self.classification is c or
                                                              _same_class(self.classification, c))
        self.tied = new_class and self.last_at_s == held.at_s
        self.classification, self.connector = c, held.connector
        self.sent_at_s = self.last_at_s = held.at_s
        self.skipped = self.skipped_as = None
        return before


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


async def simulate(items: Iterable[Item | Skip], simulations: Sequence[Simulation]) -> list[Prediction]:
    """Every record of ``items`` through each simulation (one, or a policy diff's two), in event-time
    order; unreadable, invalid, refused and late records are listed in the last one's prediction."""
    with _paced_collector() as pace:
        if len(simulations) == 1:  # the common case, without a loop per record
            simulation = simulations[0]
            answer = simulation.answer
            for run in ordered_records(items, simulations):
                simulation.counted(run)
                for held in run:
                    if not answer(held, held.admitted[0]):
                        await simulation.record(held, held.admitted[0])
                pace(len(run))
        else:
            for run in ordered_records(items, simulations):
                for simulation in simulations:
                    simulation.counted(run)
                for held in run:
                    for simulation, admitted in zip(simulations, held.admitted, strict=True):
                        await simulation.record(held, admitted)
                pace(len(run))
        return [await simulation.finish() for simulation in simulations]


@contextmanager
def _paced_collector() -> Iterator[Callable[[int], None]]:
    """The cyclic garbage collector paced by records instead of by allocations, for one run.

    A run holds up to :data:`REORDER` + :data:`RELEASE_RUN` records and every server's state
    alive; the collector's automatic passes would scan them over and over (a third of the run's
    time). Decoded records hold no reference cycles and are freed by reference counting as they
    go; whatever cyclic garbage a run makes is collected by a full pass every
    :data:`COLLECT_EVERY` records (the caller tells the function yielded how many records it
    simulated since its last call) or by the collector once it runs again after the run. What the
    run leaves alive (its prediction, the worker's state) is handed back as old objects, as if it
    had aged through the generations: else the first young collection after the run would scan all
    of it at once (a few percent of a short run's time).
    """
    since = 0

    def pace(records: int) -> None:
        nonlocal since
        since += records
        if since >= COLLECT_EVERY:
            gc.collect()
            since = 0

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield pace
    finally:
        if was_enabled:
            gc.freeze()  # every tracked object to the permanent generation ...
            gc.unfreeze()  # ... and back into the oldest one, unscanned; the young ones start empty
            gc.enable()


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
        self._scope = self.worker.policy.enforcement.enforced_connector_types
        # in the per-tenant topic mode, a tenant's verdicts go to "<verdicts topic>.<tenant>"
        self._tenant_verdicts = self.settings.tenant_verdicts_topic("") if self.settings.per_tenant_topics else None
        self.index = VerdictIndex()
        self.index.caught_up = True  # the simulated edge has read every verdict issued so far
        self._tracks: dict[str, _Track] = {}  # by server key
        self._changers: dict[str, _Changer] = {}  # waiting for the worker, by server key
        self._limit = -math.inf  # due work and commands before this epoch second are done
        self._work_at = -math.inf  # the first command or due item from there on (inf: none before the limit)
        self._days: dict[int, tuple[str, float, float]] = {}  # day number -> YYYY-MM-DD, its bounds (epoch s)
        self._offset = 0
        self._dead: list[dict[str, Any]] = []
        self._commands: deque[Command] = deque()
        self._on_record = on_record
        self._on_answer = on_answer  # (serial, server key, answer or None when refused)

    # ------------------------------------------------------------------------------------ the run

    async def run(self, items: Iterable[Item | Skip], commands: Sequence[Command] = ()) -> Prediction:
        """Simulate everything ``items`` holds; skips are listed in the prediction."""
        self.start(commands)
        return (await simulate(items, [self]))[0]

    def start(self, commands: Sequence[Command]) -> None:
        start = self.prediction.enforce_from
        self._commands = deque(c for c in commands if start is None or c.at >= start)
        self.prediction.before_enforce_from += len(commands) - len(self._commands)

    async def finish(self) -> Prediction:
        await self._flush()
        if self.prediction.last_at is not None:  # commands and due work up to the last message
            await self._advance(self.prediction.last_at)
        return self.prediction

    def admit(self, record: Any, at: datetime, key: bytes | None, topic: str | None = None,
              stamp: float | None = None) -> Admitted:
        """The worker's admission and classification of a checked record (read from ``topic``, None:
        the metadata topic, in a message the broker stamped ``stamp``); raises ``Refused``."""
        classification, server = self.worker.admit(record, at, key, topic, stamp)
        return classification, f"{record['tenant_id']}/{server}"

    # -------------------------------------------------------------------------------- one record

    async def record(self, held: Held, admitted: Admitted) -> None:
        """One record, in event-time order (:func:`simulate`), with this simulation's :meth:`admit`."""
        if not self.answer(held, admitted):
            key = admitted[1]
            if key in self._changers or len(self._changers) >= WINDOW_MAX:
                await self._flush()
            while held.at_s >= self._limit:  # a flush may start due work before the record
                await self._flush()
                if held.at_s >= self._work_at:  # else the timer would find nothing due
                    await self._advance(held.at)
                self._limit = await self._next_limit(held.at)
            answered = self.answer(held, admitted)
            assert answered, "the worker is caught up: nothing waits"

    def answer(self, held: Held, admitted: Admitted) -> bool:
        """:meth:`record` when nothing must go through the worker first (no waiting changer of the
        server, no due work, command or 00:00 UTC before the record); False, doing nothing, otherwise."""
        c, key = admitted
        changers, at_s = self._changers, held.at_s
        if at_s >= self._limit or key in changers or len(changers) >= WINDOW_MAX:
            return False
        decision = message_decision(self.index, key, at_s, in_scope=held.connector in self._scope,
                                    status=c.status)
        answer = ACTION_ANSWER[decision.action] if decision.shadow_reply is None \
            else answer_of(decision.action, decision.shadow_reply)
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(self.prediction.server(key), c, held.connector, at_s)
            self._change(track, held, c, key, answer, ())
        elif (track.classification is c and not track.tied and track.connector == held.connector) \
                or track.repeated_by(held, c):  # the usual repeat first, then what repeated_by says
            track.skipped, track.skipped_as, track.last_at_s = held, c, at_s
            if track.day_start <= at_s < track.day_end:  # the usual case of :meth:`_count`
                track.counts[answer] += 1
            else:
                self._count(track, held, answer)
            if self._on_answer is not None:
                self._on_answer(held.serial, key, answer)
        else:
            self._change(track, held, c, key, answer, track.changed_by(held, c))
        return True

    def counted(self, run: list[Held]) -> None:
        """Note a run of records :func:`simulate` handed to :meth:`answer` or :meth:`record`."""
        if not run:
            return
        prediction = self.prediction
        before = prediction.records
        prediction.records += len(run)
        if prediction.first_at is None:
            prediction.first_at = run[0].at
        prediction.last_at = run[-1].at
        if self._on_record is not None and before // 2048 != prediction.records // 2048:
            self._on_record(prediction.records)

    def _change(self, track: _Track, held: Held, c: Classification, key: str, answer: int,
                before: tuple[tuple[Held, Classification], ...]) -> None:
        """A changer waits for the worker (with ``before``, a repeat at its instant), counted once taken."""
        track.result.seen(c.product, c.version or c.build)
        self._changers[key] = _Changer(held, c, key, answer, before)

    def _count(self, track: _Track, held: Held, answer: int) -> None:
        """Count an answer on a day other than the one :meth:`answer` counts in inline (a server's
        first record of a day, mostly: once per server and day)."""
        day = int(held.at_s // DAY_S)
        known = self._days.get(day)
        if known is None:  # its text and bounds, made once for every server
            known = self._days[day] = (held.at.astimezone(UTC).strftime("%Y-%m-%d"), day * DAY_S, (day + 1) * DAY_S)
        text, start, end = known
        counts = track.result.counts_of(text)
        counts[answer] += 1
        if start >= track.day_start:  # the day its next records most likely fall on
            track.counts, track.day_start, track.day_end = counts, start, end

    # --------------------------------------------------------------------------- time and batches

    async def _advance(self, at: datetime) -> None:
        """Commands issued and due work falling at or before ``at``, each at its own time."""
        while self._commands and self._commands[0].at <= at:
            command = self._commands.popleft()
            await self.worker.advance(command.at)
            await self.worker.command(command.message)
            self.prediction.commands += 1
            self._settle_dead({}, command.where)
        await self.worker.advance(at)

    async def _next_limit(self, at: datetime) -> float:
        """Where the stretch starting at ``at`` ends: 00:00 UTC next, the next command or due item
        (those two also in :attr:`_work_at`)."""
        midnight = datetime.combine(at.astimezone(UTC).date() + timedelta(days=1), time(0), tzinfo=UTC).timestamp()
        self._work_at = math.inf
        if self._commands:
            self._work_at = self._commands[0].at.timestamp()
        return await self._due_before(min(midnight, self._work_at))

    async def _due_before(self, limit: float) -> float:
        """``limit``, or the first due item before it (then also in :attr:`_work_at`)."""
        due = await self.store.due_items(limit, 1)
        if not due:
            return limit
        self._work_at = min(self._work_at, due[0][1])
        return min(limit, due[0][1])

    async def _flush(self) -> None:
        """The waiting changers through the worker (one message each), then answered and counted."""
        if not self._changers:
            return
        changers = list(self._changers.values())
        self._changers.clear()
        sent: dict[int, _Changer] = {}
        messages = []
        topic = self.settings.topic_metadata
        for changer in changers:
            for held, c in (*changer.before, (changer.held, changer.classification)):
                self._offset += 1
                sent[self._offset] = changer
                key = held.key if held.key is not None else changer.server_key.encode()
                messages.append(CheckedMessage(
                    message=RawMessage(held.topic or topic, 0, self._offset, key, None, held.stamp), batch=False,
                    records=[orjson.loads(held.payload)], times=[held.at], classifications=[c]))
        await self.worker.process_checked(messages)
        self.store.prune()
        refused = self._settle_dead(sent, None)
        for changer in changers:
            answered = id(changer) not in refused
            if answered:
                self._count(self._tracks[changer.server_key], changer.held, changer.answer)
            if self._on_answer is not None:
                self._on_answer(changer.held.serial, changer.server_key, changer.answer if answered else None)
        self._limit = await self._due_before(self._limit)  # due work the changers started

    def _settle_dead(self, sent: dict[int, _Changer], where: str | None) -> set[int]:
        """Records (or commands) the worker dead-lettered become listed skips; returns their changers' ids."""
        refused: set[int] = set()
        for letter in self._dead:
            changer = sent.get(letter["source"]["offset"])
            if changer is not None:
                refused.add(id(changer))
                self.prediction.skip(changer.held.where, f"refused by the worker: {letter['reason']}")
                self._tracks.pop(changer.server_key, None)  # its next record is judged afresh
                self.prediction.records -= 1
            if where is not None:
                self.prediction.skip(where, f"refused by the worker: {letter['reason']}")
        self._dead.clear()
        return refused

    # ------------------------------------------------------------------------ what the worker sends

    def _published(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        if topic == self.settings.topic_verdicts or (self._tenant_verdicts and topic.startswith(self._tenant_verdicts)):
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


def _same_class(a: Classification, b: Classification) -> bool:
    """Whether two classifications agree on all the worker's state and verdicts depend on."""
    return (a.status == b.status and a.rule == b.rule and a.build == b.build and a.version == b.version
            and a.product == b.product and a.enforced == b.enforced)


# ------------------------------------------------------------------------------ event-time order

def ordered_records(items: Iterable[Item | Skip], simulations: Sequence[Simulation]) -> Iterator[list[Held]]:
    """Runs of the records that pass their contract and the worker's admission (of every
    simulation), in event-time order (ties by ``event_id``), restored within a window of at least
    :data:`REORDER` records (released in runs of :data:`RELEASE_RUN`); one that comes later than
    the window is skipped and listed (never silently dropped or misplaced), as is every unreadable
    line and every refused record, in the last simulation's prediction. Records before its
    ``enforce_from`` are counted and left out.

    A held record waits as its JSON bytes, not as decoded objects (tens of thousands of live dicts
    in the oldest generation would make every pass of the cyclic collector scan them). Records that
    arrive in order wait in a queue; only the others go through a heap.
    """
    order = _Order(simulations[-1].prediction)
    for held in _admitted(items, simulations, order.prediction):
        order.add(held)
        if order.held > REORDER + RELEASE_RUN:  # in runs: each loop stays hot in the caches
            yield order.release_run(order.held - REORDER)
    yield order.release_run(order.held)


class _Order:
    """The records waiting for their turn: a queue of those that came in order, a heap of the others.
    Positions are (epoch seconds, event id): distinct instants of the years 2000-2099 to the
    microsecond are distinct floats, so they order as the times do."""

    def __init__(self, prediction: Prediction) -> None:
        self.prediction = prediction
        self.in_order: deque[Held] = deque()
        self.late: list[Held] = []
        self.held = 0
        self._tail: tuple[Any, ...] = (-math.inf,)  # the last record queued in order
        self._done: Held | None = None  # the latest record released

    def add(self, held: Held) -> None:
        if held > self._tail or not self.in_order:  # (time, event id, serial): a later serial breaks a tie
            self.in_order.append(held)
            self._tail = held
        else:
            heapq.heappush(self.late, held)
        self.held += 1

    def release_run(self, count: int) -> list[Held]:
        """The earliest ``count`` waiting records, in order, but those that came too late (listed).
        While no record came out of order, the queue's head is never before the last record
        released, so a run is the queue's head as it is."""
        if self.late:
            return [held for held in (self.release() for _ in range(count)) if held is not None]
        popleft = self.in_order.popleft
        run = [popleft() for _ in range(count)]
        self.held -= count
        if run:
            self._done = run[-1]
        return run

    def release(self) -> Held | None:
        """The earliest waiting record; None when it came too late to be put in its place (listed)."""
        late, in_order = self.late, self.in_order
        held = heapq.heappop(late) if late and (not in_order or late[0] < in_order[0]) else in_order.popleft()
        self.held -= 1
        done = self._done
        if done is None:
            self._done = held
        elif held.at_s < done.at_s:  # at one instant, a smaller event_id late is only a tie broken late
            self.prediction.skip(held.where, f"out of time order: observed_at {held.at.isoformat()} comes more "
                                 f"than {REORDER} records after later ones (from {done.at.isoformat()}); "
                                 "sort the input by observed_at")
            return None
        elif held.at_s > done.at_s or held.event_id > done.event_id:
            self._done = held
        return held


def _admitted(items: Iterable[Item | Skip], simulations: Sequence[Simulation],
              prediction: Prediction) -> Iterator[Held]:
    """Every record that passes its contract and the worker's admission, with what each simulation
    makes of it."""
    parse, valid, from_iso = record_parser(), contracts.metadata_record_fast, datetime.fromisoformat
    admits = [simulation.admit for simulation in simulations]
    single = simulations[0].worker.admit if len(admits) == 1 else None  # the common case: no loop per record
    pairs: dict[tuple[int, str, str], tuple[Admitted, ...]] = {}
    start = prediction.enforce_from
    serial = 0
    for item in items:
        if isinstance(item, Skip):
            prediction.skip(item.where, item.reason)
            continue
        where, key_text, record, raw, topic, stamp = item
        try:  # the compiled check says "valid" at once; a record it does not pass gets the exact one
            if valid(record):
                at = from_iso(record["observed_at"])
            else:
                record, at = parse(record)
        except ContractError as error:
            prediction.skip(where, f"contract: {error.path}: {error.reason}")
            continue
        if start is not None and at < start:
            prediction.before_enforce_from += 1
            continue
        key = key_text.encode() if key_text is not None else None
        try:
            if single is not None:  # Simulation.admit, inline, each (classification, key) pair made once
                c, server = single(record, at, key, topic, stamp)
                tenant = record["tenant_id"]
                admitted = pairs.get((id(c), tenant, server))  # the pair keeps c, so its id stays its own
                if admitted is None:
                    if len(pairs) >= PAIRS_KEPT:
                        pairs.clear()
                    admitted = pairs[(id(c), tenant, server)] = ((c, f"{tenant}/{server}"),)
            else:
                admitted = tuple([a(record, at, key, topic, stamp) for a in admits])
        except Refused as refusal:
            prediction.skip(where, f"refused by the worker: {refusal}")
            continue
        except Exception as error:  # a bug costs this record only, as in the worker's batch
            prediction.skip(where, f"refused by the worker: internal error: {type(error).__name__}: {error}")
            continue
        serial += 1
        yield tuple.__new__(Held, (at.timestamp(), record["event_id"], serial, at, where, key,
                                   raw if raw is not None else orjson.dumps(record), record["connector"]["type"],
                                   admitted, topic, stamp))  # Held(...), made in C
