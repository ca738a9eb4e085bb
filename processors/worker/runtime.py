"""Everything a worker process runs besides the Faust plumbing: batches with retry, operator
commands (pauses), and the time-driven work (one worker at a time, by a lease in the state store).
All state goes through the store's named operations (:class:`processors.state.protocol.Store`).

Failure behaviour: when Redis or the broker fails, the batch is retried whole with exponential
backoff (0.1 s doubling to 10 s) and the agent consumes nothing meanwhile; offsets are committed
only for batches that finished, so nothing is lost. Retrying is safe because processing is
idempotent (see :mod:`processors.worker.processing`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import orjson

from processors import metrics
from processors.classify import Connection, classify
from processors.contracts import ContractError
from processors.enforcement.pauses import PauseOutcome, PauseState, apply_pause_command
from processors.enforcement.verdicts import ServerState, evaluate, rfc3339
from processors.events.command import Command, CommandKeyMismatch, parse_command
from processors.events.notification import notification
from processors.events.wire import encode_event
from processors.kafka.delivery import DeliveryFailed, KafkaOutput, published_since
from processors.kafka.verdict_routing import publication_topic
from processors.settings import Settings
from processors.state.errors import ScriptsLost, StoreUnavailable
from processors.state.keys import (
    DUE_TENANT,
    PROGRESS_POLICY,
    PROGRESS_TIMER,
    ServerField,
    parse_due_member,
    progress_owner,
    progress_partition,
)
from processors.state.model import TIMER_BATCH, CommandState, LeaseState, Observation, outbox_record
from processors.state.protocol import Store
from processors.worker.clock import Clock
from processors.worker.policies import PolicySource
from processors.worker.processing import (
    BUILD_BEARING,
    BatchProcessor,
    BatchStats,
    CheckedMessage,
    RawMessage,
    evidence_item,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE = (StoreUnavailable, DeliveryFailed, OSError)


def record_batch_metrics(messages: Sequence[RawMessage], stats: BatchStats) -> None:
    if messages:
        metrics.EVENTS_IN.labels(messages[0].topic).inc(len(messages))
    metrics.BATCH_SIZE.labels("messages").observe(stats.messages)
    metrics.BATCH_SIZE.labels("records").observe(stats.records)
    metrics.BATCH_SIZE.labels("servers").observe(stats.servers)
    for reason, count in stats.dead_letter_reasons.items():
        metrics.DEAD_LETTERS.labels(metrics.reason_label(reason)).inc(count)
    for status, count in stats.statuses.items():
        metrics.CLASSIFICATIONS.labels(status).inc(count)
    for action, count in stats.verdict_actions.items():
        metrics.VERDICTS.labels(action).inc(count)
    for operation, seconds in stats.redis_seconds:
        metrics.REDIS_SECONDS.labels(operation).observe(seconds)


class WorkerRuntime:
    def __init__(self, settings: Settings, store: Store, output: KafkaOutput, policies: PolicySource,
                 clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.output = output
        self.policies = policies
        self.clock = clock
        self.processor = BatchProcessor(settings, store, output, policies)
        self.ready = asyncio.Event()
        self.totals = BatchStats()
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        # what the servers were judged under, until the state store says (progress mark ``policy``)
        self._judged_content = policies.current.content

    async def start(self) -> None:
        await self.retry(self.store.load_scripts, "loading Redis scripts")
        await self.retry(self.processor.flush_outboxes, "publishing outboxes left by a crash")
        # Everything allocated so far (Faust, aiokafka, the catalog, compiled validators) lives as
        # long as the process: keep it out of the cyclic collector's full passes, whose pauses
        # otherwise show up in the event -> verdict latency.
        gc.collect()
        gc.freeze()
        self.ready.set()

    async def retry(self, action: Callable[[], Awaitable[T]], what: str) -> T:
        delay = 0.1
        while True:
            try:
                return await action()
            except ScriptsLost:
                log.warning("Redis lost the scripts (restart?): loading them again")
                await self._reload_scripts()
            except RETRYABLE as error:
                log.error("%s failed, retrying in %.1fs: %s", what, delay, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _reload_scripts(self) -> None:
        try:
            await self.store.load_scripts()
        except StoreUnavailable as error:
            log.error("cannot load Redis scripts: %s", error)
            await asyncio.sleep(1.0)

    # ------------------------------------------------------------------------------ metadata batches

    async def process_batch(self, messages: Sequence[RawMessage]) -> BatchStats:
        await self.ready.wait()
        self.policies.maybe_reload()
        marks = self._progress_marks(messages)
        stats = await self.retry(lambda: self.processor.process(messages, progress=marks),
                                 "processing a metadata batch")
        return self._account(messages, stats)

    async def process_checked_batch(self, messages: Sequence[CheckedMessage]) -> BatchStats:
        """:meth:`process_batch` for records already decoded, checked and classified (in process)."""
        await self.ready.wait()
        self.policies.maybe_reload()
        raw = [checked.message for checked in messages]
        marks = self._progress_marks(raw)
        stats = await self.retry(lambda: self.processor.process_checked(messages, progress=marks),
                                 "processing a metadata batch")
        return self._account(raw, stats)

    def _account(self, messages: Sequence[RawMessage], stats: BatchStats) -> BatchStats:
        """Metrics and running totals of a processed batch."""
        record_batch_metrics(messages, stats)
        self.processor.record_admission_metrics(stats)
        for name in ("messages", "records", "dead_letters", "servers", "verdicts", "notifications"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))
        return stats

    def _progress_marks(self, messages: Sequence[RawMessage]) -> dict[str, int | str]:
        """The last offset fully processed per partition, and by whom: for operators and replay drivers."""
        marks: dict[str, int | str] = {}
        for message in messages:
            field = progress_partition(message.topic, message.partition)
            marks[field] = max(int(marks.get(field, -1)), message.offset)
            marks[progress_owner(message.topic, message.partition)] = self.identity
        return marks

    async def _mark_progress(self, messages: Sequence[RawMessage]) -> None:
        await self.store.mark_progress(self._progress_marks(messages))

    # ------------------------------------------------------------------------------ operator commands

    async def process_command(self, message: RawMessage) -> PauseOutcome | None:
        """Apply one operator command; returns its outcome, or None when it was rejected or applied before."""
        await self.ready.wait()
        try:
            command = parse_command(message.value, message.key)
        except CommandKeyMismatch as error:
            await self._reject_command(message, str(error), None)
            return None
        except (orjson.JSONDecodeError, ContractError) as error:
            await self._reject_command(message, f"command rejected: {error}", getattr(error, "path", None))
            return None
        outcome = await self._apply_command(command)
        await self.retry(lambda: self._mark_progress([message]), "recording progress")
        return outcome

    async def _reject_command(self, message: RawMessage, reason: str, path: str | None) -> None:
        stats = BatchStats()
        self.processor.dead_letter(stats, message, reason, path, None, datetime.now(UTC))
        for kind, count in stats.dead_letter_reasons.items():
            metrics.DEAD_LETTERS.labels(metrics.reason_label(kind)).inc(count)
        await self.retry(self.output.flush, "publishing a dead letter")
        await self.retry(lambda: self._mark_progress([message]), "recording progress")

    async def _apply_command(self, command: Command) -> PauseOutcome | None:
        """Apply a command once, then complete its effects (re-evaluation, notification).

        The command is marked applied and open in the same transaction as its pause change, and
        closed once its effects are complete. A command seen again while open (a crash or a Redis
        error in between, then redelivery or retry) completes the effects again: the re-evaluation
        commits verdicts by fingerprint compare-and-set and the notification was queued once with the
        command, so every crash point converges to the verdicts of an uninterrupted run. A closed
        command seen again changes nothing (a replayed topic does not re-judge servers at old times).
        """
        tenant = command["tenant_id"]
        at = datetime.fromisoformat(command["issued_at"])
        state, outcome = await self.retry(lambda: self._record_command(command, tenant, at), "applying a command")
        if state == CommandState.CLOSED:
            return None
        await self.retry(lambda: self._complete_command(tenant, command["command_id"], at, outcome),
                         "completing a command's re-evaluation and notification")
        return outcome

    async def _record_command(self, command: Command, tenant: str, at: datetime
                              ) -> tuple[str, PauseOutcome | None]:
        """Mark the command applied and change the pause, in one transaction of the store.
        Returns (APPLIED, outcome), or (OPEN | CLOSED, None) for a command applied before whose
        effects may be incomplete / are complete."""
        command_id = command["command_id"]
        policy = self.policies.current.enforcement.pauses

        def decide(state: PauseState) -> tuple[PauseOutcome, bytes]:
            outcome = apply_pause_command(state, command["action"], command.get("days"), at, policy)
            return outcome, self._pause_notification(tenant, outcome, command_id, at)

        return await self.store.record_command(tenant, command_id, decide)

    async def _complete_command(self, tenant: str, command_id: str, at: datetime,
                                outcome: PauseOutcome | None) -> None:
        """The effects of an applied command; safe to repeat. ``outcome`` None: it was applied
        earlier and its effects may be incomplete, so they are completed from the stored pause."""
        changed = outcome is None or outcome.kind != "pause_refused"
        pause = outcome.state if outcome is not None else (await self.store.pause_states([tenant]))[tenant]
        pause_end = pause.until.timestamp() if changed and pause.until is not None and pause.until > at else None
        await self.store.queue_tenant_work(tenant, pause_end)
        if changed:
            await self.reevaluate_tenant(tenant, at, pause)
        await self.processor.publish([self.store.keys.tenant_outbox(tenant)], BatchStats())
        await self.store.complete_command(tenant, command_id)

    def _pause_notification(self, tenant: str, outcome: PauseOutcome, identity: str, at: datetime) -> bytes:
        record = notification(
            tenant_id=tenant, kind=outcome.kind, identity=identity, at=at, text=outcome.text,
            next_stage_at=outcome.state.until if outcome.kind != "pause_refused" else None,
            shadow=self.policies.current.enforcement.shadow.applies_to(tenant),
        )
        return outbox_record(self.settings.topic_notifications, tenant, encode_event(record))

    async def reevaluate_tenant(self, tenant: str, at: datetime, pause: PauseState | None = None) -> None:
        server_keys = await self.store.tenant_servers(tenant)
        if pause is None:
            pause = (await self.store.pause_states([tenant]))[tenant]
        await self._reevaluate(server_keys, at, {tenant: pause}, force_due=False)

    async def _reevaluate(self, server_keys: Sequence[str], at: datetime, pauses: dict[str, PauseState],
                          force_due: bool) -> BatchStats:
        stats = BatchStats()
        policy = self.policies.current.enforcement
        evaluations = []
        for server_key, (fields, ips) in zip(server_keys, await self.store.server_states(server_keys), strict=True):
            if not fields:
                continue
            state = ServerState.from_hash(server_key, fields, ips)
            pause = pauses.get(state.tenant_id, PauseState())
            evaluations.append((fields, evaluate(state, policy, pause, at)))
        await self.processor.commit(evaluations, stats, force_due=force_due)
        return stats

    # ------------------------------------------------------------------------------------------- the timer

    async def tick(self) -> int:
        """Run all time-driven work due by the clock, if this worker holds the timer lease.

        Returns the number of due items handled."""
        await self.ready.wait()
        self.policies.maybe_reload()  # the batches check too; whoever notices first, the timer re-evaluates
        if not await self.retry(self._hold_timer_lease, "taking the timer lease"):
            return 0
        return await self.retry(self._tick, "running the timer")

    async def _hold_timer_lease(self) -> bool:
        """Take or renew the lease that makes this worker the one running the timer."""
        ttl_ms = max(2000, int(self.settings.timer_interval_s * 3000))
        lease = await self.store.hold_timer_lease(self.identity, ttl_ms)
        if lease == LeaseState.ACQUIRED:
            log.info("this worker (%s) now runs the timer", self.identity)
        return lease != LeaseState.HELD_ELSEWHERE

    async def _tick(self) -> int:
        now = await self.clock.now()
        if now is None:
            return 0
        await self._rejudge_if_policy_changed(now)
        handled = await self._run_due(now)
        await self.processor.flush_outboxes()
        await self.recover_abandoned_claims()
        await self.store.mark_progress({PROGRESS_TIMER: repr(now.timestamp())})
        return handled

    async def _rejudge_if_policy_changed(self, now: datetime) -> None:
        """Re-evaluate every server when the policy or a catalog says something new (shadow mode
        switched, a stage table or a build list changed), then record that content as judged.

        The record is written only once every server was re-evaluated, so a crash in between (here or
        on another worker) leaves the old content recorded and the next timer run does it all again;
        re-evaluating is idempotent (fingerprint compare-and-set), so verdicts are published once.
        """
        content = self.policies.current.content
        judged = (await self.store.progress()).get(PROGRESS_POLICY)
        if judged is None:  # the first timer run on this state: the servers were judged under the start-up files
            judged = self._judged_content
            await self.store.mark_progress({PROGRESS_POLICY: judged})
        if judged == content:
            return
        log.info("policy/catalog content %s differs from the one the servers were judged under (%s): "
                 "re-evaluating every server", content, judged)
        await self.reclassify_all(now)
        await self.store.mark_progress({PROGRESS_POLICY: content})
        self._judged_content = content

    async def dead_letter_batch(self, messages: Sequence[RawMessage], error: BaseException) -> None:
        """Last resort for a batch that fails for a reason retrying cannot fix: keep it, with the reason."""
        stats = BatchStats()
        now = datetime.now(UTC)
        for message in messages:
            self.processor.dead_letter(stats, message, f"internal error: {type(error).__name__}: {error}",
                                       None, None, now)
        await self.retry(self.output.flush, "publishing dead letters")
        await self.retry(lambda: self._mark_progress(messages), "recording progress")
        for reason, count in stats.dead_letter_reasons.items():
            metrics.DEAD_LETTERS.labels(metrics.reason_label(reason)).inc(count)

    async def _run_due(self, now: datetime) -> int:
        """Every item due by ``now``, in due order, each at its own time. Servers due at one instant
        (a stage starting at 00:00 UTC for all servers detected on one day) are re-evaluated and
        committed together; an item is removed only after its work is committed, so a crash in
        between repeats that work, which is idempotent (fingerprint compare-and-set)."""
        handled = 0
        while True:
            due = await self.store.due_items(now.timestamp(), TIMER_BATCH)
            if not due:
                return handled
            for group in _due_groups(due):
                member, score = group[0]
                at = datetime.fromtimestamp(score, UTC)
                kind, name = parse_due_member(member)
                if kind == DUE_TENANT:
                    await self._pause_expired(name, at)
                    await self.store.remove_due(member)
                else:
                    names = [parse_due_member(m)[1] for m, _ in group]
                    pauses = await self.store.pause_states(sorted({n.partition("/")[0] for n in names}))
                    await self._reevaluate(names, at, pauses, force_due=True)
                    for member, score in group:
                        await self.store.remove_due_unless_renewed(member, score)
                handled += len(group)

    async def _pause_expired(self, tenant: str, at: datetime) -> None:
        pause = (await self.store.pause_states([tenant]))[tenant]
        if pause.until is not None and pause.until <= at:
            outcome = PauseOutcome("pause_ended", pause, f"The enforcement pause ended on {at:%Y-%m-%d %H:%M} UTC; "
                                   "throttling and blocking apply again.", 0)
            record = self._pause_notification(tenant, outcome, f"expired|{rfc3339(pause.until)}", at)
            await self.store.emit_tenant_once(tenant, f"expired|{rfc3339(pause.until)}", record)
            await self.reevaluate_tenant(tenant, at, pause)
            await self.processor.publish([self.store.keys.tenant_outbox(tenant)], BatchStats())

    async def recover_abandoned_claims(self) -> int:
        """Publish what a crashed publisher claimed but may not have sent: only the records Kafka lacks."""
        abandoned = await self.store.abandoned_claims(time.time() - self.settings.outbox_recovery_s)
        if not abandoned:
            return 0
        since = min(claimed_at for claimed_at, _ in abandoned) - 1.0
        records = [record for _, claimed in abandoned for record in claimed]
        routed = [(publication_topic(self.settings, r.topic, r.key), r) for r in records]  # where each went
        present = await asyncio.get_running_loop().run_in_executor(
            None, published_since, self.settings.kafka, sorted({topic for topic, _ in routed}), since)
        missing = [(topic, r) for topic, r in routed if (topic, r.key, r.value) not in present]
        for topic, record in missing:
            self.output.produce(topic, record.key, record.value)
        await self.output.flush()
        await self.store.release(records, self.settings.topic_notifications)
        log.warning("recovered %d abandoned outbox records: %d republished, %d were already in Kafka",
                    len(records), len(missing), len(records) - len(missing))
        return len(missing)

    async def reclassify_all(self, now: datetime) -> None:
        """After a catalog or policy change: classify every server's last hop again, then re-evaluate."""
        for tenant in await self.store.tenants():
            server_keys = await self.store.tenant_servers(tenant)
            states = await self.store.server_states(server_keys)
            observations = [obs for server_key, (fields, ips) in zip(server_keys, states, strict=True)
                            if (obs := self._reclassified(server_key, tenant, fields, ips, now)) is not None]
            if observations:
                await self.store.observe(observations, [tenant])
            await self.reevaluate_tenant(tenant, now)

    def _reclassified(self, server_key: str, tenant: str, fields: dict[str, str], ips: list[str],
                      now: datetime) -> Observation | None:
        """The server's last build-bearing hop classified again at ``now``, as an observation to fold."""
        snapshot = self.policies.current
        hop = fields.get(ServerField.HOP)
        if not hop:
            return None
        helo = fields.get(ServerField.LAST_HELO)
        c = classify([("Received", hop)], Connection(ip=ips[0] if ips else "0.0.0.0", helo=helo),
                     now, catalog=snapshot.catalog, policy=snapshot.classification, products=snapshot.products)
        if c.status not in BUILD_BEARING:
            return None
        at = now.timestamp()
        return Observation(
            server_key=server_key, tenant_id=tenant, server=fields.get(ServerField.SERVER, ""),
            first_at=float(fields.get(ServerField.FIRST_SEEN, at)),
            last_at=float(fields.get(ServerField.LAST_SEEN, at)),
            evidence=[evidence_item(c, at)],
            latest={"at": at, "status": c.status, "rule": c.rule,
                    "connector_type": fields.get(ServerField.CONNECTOR_TYPE, ""), "helo": helo or ""},
            ips=[], helos=[], event_ids_by_day={},
        )


def _due_groups(due: Sequence[tuple[str, float]]) -> Iterator[list[tuple[str, float]]]:
    """Due items in their order, as runs of server items due at one instant; a tenant item alone."""
    group: list[tuple[str, float]] = []
    servers = False  # the group is a run of server items
    for member, score in due:
        server = parse_due_member(member)[0] != DUE_TENANT
        if group and not (server and servers and score == group[0][1]):
            yield group
            group = []
        servers = server
        group.append((member, score))
    if group:
        yield group
