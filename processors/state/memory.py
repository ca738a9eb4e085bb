"""The state store in process memory: the same operations and the same semantics as the Redis
store (:class:`processors.state.store.StateStore`), for unit tests and tools that need no services.

The server-side scripts are re-stated in Python (``_observe``, ``_commit_verdict``, ``_emit_once``,
``_claim_outbox``), over the same key names (:class:`processors.state.keys.KeySchema`), so a test
can look at the state the way it would look at Redis. Every operation runs without awaiting in
between, so each is atomic as a script or transaction is. Differences no caller depends on:
per-day message counts are exact sets instead of HyperLogLogs (which estimate, exactly for small
counts), keys do not expire (HyperLogLog retention; the webhook-delivered set, whose readers check
the delivery time against the TTL themselves), and nothing is persisted. The
timer lease does expire, by ``monotonic`` (injectable). Sized for tests and tools: an operation may
scan every key (to drop emptied containers as Redis does), so it is not for production volumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from processors.enforcement.pauses import PauseOutcome, PauseState
from processors.state.keys import (
    DUE_SERVER,
    DUE_TENANT,
    HISTORY_LENGTH,
    NOTIFICATIONS_KEPT,
    STATE_FIELDS,
    KeySchema,
    ServerField,
    due_member,
)
from processors.state.model import (
    ARGUMENTS_MAX,
    SET_CAP,
    CommandState,
    Commit,
    LeaseState,
    Observation,
    ObservedState,
    OutboxRecord,
    ServerReport,
    observation_parts,
    parse_outbox,
    pause_state_from_hash,
    pause_state_to_hash,
)
from processors.state.protocol import CommandDecision


def lua_text(value: Any) -> str:
    """A JSON value as the scripts' ``tostring`` writes it (Lua numbers: 14 significant digits)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format(float(value), ".14g")
    return str(value)


def _number(value: str | None) -> float | None:
    return float(value) if value is not None else None


class MemoryStateStore:
    """Patchgate's state in dictionaries keyed like Redis: hashes, sets, lists, sorted sets, strings."""

    def __init__(self, keys: KeySchema | None = None, monotonic: Callable[[], float] = time.monotonic,
                 *, prune_every: int = 1, keep_message_ids: bool = True) -> None:
        """``prune_every``: drop emptied containers after every operation (1, as Redis does) or only
        every n-th; a reader cannot tell (an empty container reads as absent), so a tool folding
        millions of records can spare the scan over every key. ``keep_message_ids=False``: the
        per-day message-id sets (the report's counts only; nothing a verdict depends on) are not
        kept, so memory does not grow with every record folded in."""
        self.keys = keys or KeySchema()
        self._keep_message_ids = keep_message_ids
        self._prune_every = max(1, prune_every)
        self._operations = 0
        self.hashes: dict[str, dict[str, str]] = {}
        self.sets: dict[str, set[str]] = {}
        self.lists: dict[str, list[bytes]] = {}
        self.zsets: dict[str, dict[str, float]] = {}
        self.strings: dict[str, str] = {}
        self._lease_until = 0.0
        self._monotonic = monotonic

    async def load_scripts(self) -> None:
        """Nothing to load: the scripts are methods here."""

    async def close(self) -> None:
        """Nothing to close."""

    async def ping(self) -> None:
        """Always reachable."""

    # ------------------------------------------------------------------------------- data structures

    def _hash(self, key: str) -> dict[str, str]:
        return self.hashes.setdefault(key, {})

    def _set(self, key: str) -> set[str]:
        return self.sets.setdefault(key, set())

    def _list(self, key: str) -> list[bytes]:
        return self.lists.setdefault(key, [])

    def _drop_empty(self) -> None:
        """Redis deletes a container when its last element goes: so does this store (every
        ``prune_every``-th operation)."""
        self._operations += 1
        if self._operations % self._prune_every == 0:
            self.prune()

    def prune(self) -> None:
        """Drop every emptied container now."""
        for table in (self.hashes, self.sets, self.lists, self.zsets):
            for key in [key for key, value in table.items() if not value]:
                del table[key]  # type: ignore[attr-defined]

    def _exists(self, key: str) -> bool:
        return bool(self.hashes.get(key) or self.sets.get(key) or self.lists.get(key) or self.zsets.get(key)
                    or key in self.strings)

    # ----------------------------------------------------------------------------- batch operations

    async def observe(self, observations: Sequence[Observation], tenants: Iterable[str]
                      ) -> tuple[list[ObservedState], dict[str, PauseState]]:
        states: list[ObservedState] = []
        for obs in observations:
            for part in observation_parts(obs):
                answer = self._observe(part)
            states.append(answer)
            self._set(self.keys.tenant_servers(obs.tenant_id)).add(obs.server_key)
        tenant_list = sorted(set(tenants))
        self._set(self.keys.tenants).update(tenant_list)
        self._drop_empty()
        return states, {tenant: self._pause(tenant) for tenant in tenant_list}

    def _observe(self, obs: Observation) -> ObservedState:
        """``observe.lua``: fold one part of one server's batch into its state."""
        if len(obs.evidence) > ARGUMENTS_MAX or sum(map(len, obs.event_ids_by_day.values())) > ARGUMENTS_MAX:
            raise ValueError(f"{obs.server_key}: an observation part over {ARGUMENTS_MAX} items")
        keys = self.keys
        state = self._hash(keys.server(obs.server_key))
        state[ServerField.TENANT_ID], state[ServerField.SERVER] = obs.tenant_id, obs.server
        first_seen, last_seen = _number(state.get(ServerField.FIRST_SEEN)), _number(state.get(ServerField.LAST_SEEN))
        if first_seen is None or obs.first_at < first_seen:
            state[ServerField.FIRST_SEEN] = repr(obs.first_at)
        if last_seen is None or obs.last_at > last_seen:
            state[ServerField.LAST_SEEN] = repr(obs.last_at)
        for item in orjson.loads(orjson.dumps(obs.evidence)):  # the JSON the script decodes
            self._fold_evidence(state, item)
        self._fold_latest(state, orjson.loads(orjson.dumps(obs.latest)))
        self._add_capped(keys.server_ips(obs.server_key), obs.ips[:SET_CAP])
        self._add_capped(keys.server_helos(obs.server_key), obs.helos[:SET_CAP])
        if self._keep_message_ids:
            for day, ids in obs.event_ids_by_day.items():
                self._set(keys.server_day_hll(obs.server_key, day)).update(ids)
        return ({name: state[name] for name in STATE_FIELDS if name in state},
                sorted(self.sets.get(keys.server_ips(obs.server_key), ())),
                len(self.lists.get(keys.server_outbox(obs.server_key), ())))

    @staticmethod
    def _fold_evidence(state: dict[str, str], item: dict[str, Any]) -> None:
        """One evidence item: newest evidence fields win; detection / remediation times move."""
        at = float(item["at"])
        evidence_at = _number(state.get(ServerField.EVIDENCE_AT))
        if evidence_at is None or at >= evidence_at:
            state[ServerField.EVIDENCE_AT] = lua_text(item["at"])
            for name, value in item["fields"].items():
                if value is None:
                    state.pop(name, None)
                else:
                    state[name] = lua_text(value)
        current_at = _number(state.get(ServerField.CURRENT_AT))
        detected_at = _number(state.get(ServerField.DETECTED_AT))
        if item["vulnerable"] == 1:
            if (current_at is None or at > current_at) and (detected_at is None or at < detected_at):
                state[ServerField.DETECTED_AT] = lua_text(item["at"])
        elif item["vulnerable"] == 0:
            if current_at is None or at > current_at:
                state[ServerField.CURRENT_AT] = lua_text(item["at"])
            if detected_at is not None and at > detected_at:
                state.pop(ServerField.DETECTED_AT, None)

    @staticmethod
    def _fold_latest(state: dict[str, str], latest: dict[str, Any]) -> None:
        status_at = _number(state.get(ServerField.LAST_STATUS_AT))
        if status_at is None or float(latest["at"]) >= status_at:
            state.update({ServerField.LAST_STATUS: lua_text(latest["status"]),
                          ServerField.LAST_RULE: lua_text(latest["rule"]),
                          ServerField.LAST_STATUS_AT: lua_text(latest["at"]),
                          ServerField.CONNECTOR_TYPE: lua_text(latest["connector_type"]),
                          ServerField.LAST_HELO: lua_text(latest["helo"])})

    def _add_capped(self, key: str, values: Sequence[str]) -> None:
        members = self._set(key)
        for value in values:
            if len(members) >= SET_CAP:
                return
            members.add(value)

    async def commit(self, commits: Sequence[Commit], once: Sequence[tuple[str, str, bytes]],
                     due: Sequence[tuple[str, float]], verdicts_topic: str, claim: Sequence[str] = (),
                     now: float = 0.0) -> tuple[list[int], list[OutboxRecord]]:
        for c in commits:  # checked up front, as the Redis store refuses before sending anything
            if len(c.notifications) > ARGUMENTS_MAX:
                raise ValueError(f"{c.server_key}: {len(c.notifications)} notifications in one verdict commit")
        sequences = [self._commit_verdict(c, verdicts_topic) for c in commits]
        for server_key, notification_id, record in once:
            self._emit_once(self.keys.server(server_key), self.keys.server_outbox(server_key), notification_id, record)
        self._set(self.keys.outbox_pending).update(claim)
        for server_key, when in due:
            self.zsets.setdefault(self.keys.due, {})[due_member(DUE_SERVER, server_key)] = when
            self._hash(self.keys.server(server_key))[ServerField.DUE_AT] = repr(when)
        claimed = [record for outbox in claim for record in self._claim_outbox(outbox, now)]
        self._drop_empty()
        return sequences, claimed

    def _commit_verdict(self, c: Commit, verdicts_topic: str) -> int:
        """``commit_verdict.lua``: compare-and-set by fingerprint; sequence, outbox, history."""
        keys = self.keys
        state = self._hash(keys.server(c.server_key))
        if state.get(ServerField.FINGERPRINT) == c.fingerprint:
            return 0
        sequence = int(state.get(ServerField.SEQUENCE, "0")) + 1
        verdict = c.verdict_prefix + str(sequence).encode() + c.verdict_suffix
        state.update({ServerField.SEQUENCE: str(sequence), ServerField.VERDICT: verdict.decode(),
                      ServerField.FINGERPRINT: c.fingerprint, ServerField.STAGE: str(c.stage),
                      ServerField.ISSUED_AT: repr(c.issued_at)})
        outbox = self._list(keys.server_outbox(c.server_key))
        outbox.append(f"{verdicts_topic}\n{c.kafka_key}\n".encode() + verdict)
        outbox.extend(c.notifications)
        history = self._list(keys.server_history(c.server_key))
        history.insert(0, c.history)
        del history[HISTORY_LENGTH:]
        return sequence

    def _emit_once(self, flag_hash: str, outbox: str, notification_id: str, record: bytes) -> bool:
        """``emit_once.lua``: queue ``record`` unless this id was queued before."""
        flags = self._hash(flag_hash)
        flag = f"{ServerField.SENT_PREFIX}{notification_id}"
        if flag in flags:
            return False
        flags[flag] = "1"
        self._list(outbox).append(record)
        return True

    def _claim_outbox(self, outbox: str, now: float) -> list[OutboxRecord]:
        """``claim_outbox.lua``: move the outbox to its in-flight list unless a claim is open; an
        outbox with nothing queued and no claim open leaves the pending set."""
        inflight = self.keys.outbox_inflight(outbox)
        if self.lists.get(inflight):
            return []
        if not self.lists.get(outbox):
            self.sets.get(self.keys.outbox_pending, set()).discard(outbox)
            return []
        self.lists[inflight] = self.lists.pop(outbox)
        self.strings[self.keys.outbox_claimed_at(outbox)] = repr(now)
        return [parse_outbox(outbox, raw) for raw in self.lists[inflight]]

    async def claim(self, outboxes: Sequence[str], now: float) -> list[OutboxRecord]:
        claimed = [record for outbox in outboxes for record in self._claim_outbox(outbox, now)]
        self._drop_empty()
        return claimed

    async def release(self, delivered: Sequence[OutboxRecord], notifications_topic: str,
                      progress: Mapping[str, int | str] | None = None) -> None:
        keys = self.keys
        for record in delivered:
            if record.topic == notifications_topic:
                kept = self._list(keys.tenant_notifications(record.key.decode()))
                kept.insert(0, record.value)
                del kept[NOTIFICATIONS_KEPT:]
        outboxes = sorted({record.outbox for record in delivered})
        for outbox in outboxes:
            self.lists.pop(keys.outbox_inflight(outbox), None)
            self.strings.pop(keys.outbox_claimed_at(outbox), None)
        await self.mark_progress(progress or {})
        pending = self._set(keys.outbox_pending)
        pending.difference_update(outbox for outbox in outboxes if not self._exists(outbox))
        self._drop_empty()

    async def abandoned_claims(self, older_than: float) -> list[tuple[float, list[OutboxRecord]]]:
        abandoned = []
        for outbox in await self.pending_outboxes():
            claimed_at = self.strings.get(self.keys.outbox_claimed_at(outbox))
            raws = self.lists.get(self.keys.outbox_inflight(outbox))
            if raws and claimed_at is not None and float(claimed_at) < older_than:
                abandoned.append((float(claimed_at), [parse_outbox(outbox, raw) for raw in raws]))
        return abandoned

    async def pending_outboxes(self) -> list[str]:
        return sorted(self.sets.get(self.keys.outbox_pending, ()))

    async def mark_progress(self, marks: Mapping[str, int | str]) -> None:
        if marks:
            self._hash(self.keys.progress).update({name: str(value) for name, value in marks.items()})

    async def progress(self) -> dict[str, str]:
        return dict(self.hashes.get(self.keys.progress, {}))

    # ---------------------------------------------------------------------------------- state reads

    def _pause(self, tenant_id: str) -> PauseState:
        return pause_state_from_hash(self.hashes.get(self.keys.tenant_pause(tenant_id), {}))

    async def server_states(self, server_keys: Sequence[str]) -> list[tuple[dict[str, str], list[str]]]:
        return [(dict(self.hashes.get(self.keys.server(key), {})), sorted(self.sets.get(self.keys.server_ips(key), ())))
                for key in server_keys]

    async def pause_states(self, tenants: Sequence[str]) -> dict[str, PauseState]:
        return {tenant: self._pause(tenant) for tenant in tenants}

    async def tenant_servers(self, tenant_id: str) -> list[str]:
        return sorted(self.sets.get(self.keys.tenant_servers(tenant_id), ()))

    async def tenants(self) -> list[str]:
        return sorted(self.sets.get(self.keys.tenants, ()))

    async def tenant_known(self, tenant_id: str) -> bool:
        return tenant_id in self.sets.get(self.keys.tenants, ())

    # ------------------------------------------------------------------------------ operator commands

    async def record_command(self, tenant_id: str, command_id: str, decide: CommandDecision
                             ) -> tuple[str, PauseOutcome | None]:
        keys = self.keys
        if command_id in self.sets.get(keys.tenant_commands(tenant_id), ()):
            still_open = command_id in self.sets.get(keys.tenant_commands_open(tenant_id), ())
            return (CommandState.OPEN if still_open else CommandState.CLOSED), None
        outcome, record = decide(self._pause(tenant_id))
        self._set(keys.tenant_commands(tenant_id)).add(command_id)
        self._set(keys.tenant_commands_open(tenant_id)).add(command_id)
        if outcome.kind != "pause_refused":
            self.hashes[keys.tenant_pause(tenant_id)] = pause_state_to_hash(outcome.state)
        self._list(keys.tenant_outbox(tenant_id)).append(record)
        self._drop_empty()
        return CommandState.APPLIED, outcome

    async def queue_tenant_work(self, tenant_id: str, pause_end: float | None) -> None:
        self._set(self.keys.outbox_pending).add(self.keys.tenant_outbox(tenant_id))
        if pause_end is not None:
            self.zsets.setdefault(self.keys.due, {})[due_member(DUE_TENANT, tenant_id)] = pause_end

    async def complete_command(self, tenant_id: str, command_id: str) -> None:
        self.sets.get(self.keys.tenant_commands_open(tenant_id), set()).discard(command_id)
        self._drop_empty()

    async def emit_tenant_once(self, tenant_id: str, notification_id: str, record: bytes) -> bool:
        queued = self._emit_once(self.keys.tenant_pause(tenant_id), self.keys.tenant_outbox(tenant_id),
                                 notification_id, record)
        self._set(self.keys.outbox_pending).add(self.keys.tenant_outbox(tenant_id))
        return queued

    # ------------------------------------------------------------------------------------ the timer

    async def due_items(self, until: float, limit: int) -> list[tuple[str, float]]:
        items = sorted(((score, member) for member, score in self.zsets.get(self.keys.due, {}).items()
                        if score <= until))
        return [(member, score) for score, member in items[:limit]]

    async def remove_due(self, member: str) -> None:
        self.zsets.get(self.keys.due, {}).pop(member, None)
        self._drop_empty()

    async def remove_due_unless_renewed(self, member: str, score: float) -> None:
        current = self.zsets.get(self.keys.due, {}).get(member)
        if current is not None and current <= score:
            await self.remove_due(member)

    async def hold_timer_lease(self, identity: str, ttl_ms: int) -> str:
        now = self._monotonic()
        holder = self.strings.get(self.keys.timer_lease) if now < self._lease_until else None
        if holder is None:
            self.strings[self.keys.timer_lease], self._lease_until = identity, now + ttl_ms / 1000
            return LeaseState.ACQUIRED
        if holder == identity:
            self._lease_until = now + ttl_ms / 1000
            return LeaseState.RENEWED
        return LeaseState.HELD_ELSEWHERE

    async def clock_now(self) -> float | None:
        raw = self.strings.get(self.keys.clock)
        return float(raw) if raw else None

    async def set_clock(self, epoch: float) -> None:
        self.strings[self.keys.clock] = repr(epoch)

    # ------------------------------------------------------------------------- reports, api, notifier

    async def server_reports(self, server_keys: Sequence[str], days: Sequence[str], chunk: int
                             ) -> list[ServerReport]:
        return [ServerReport(key, dict(self.hashes[self.keys.server(key)]),
                             sorted(self.sets.get(self.keys.server_ips(key), ())),
                             sorted(self.sets.get(self.keys.server_helos(key), ())),
                             [(day, len(self.sets.get(self.keys.server_day_hll(key, day), ()))) for day in days])
                for key in server_keys if self.hashes.get(self.keys.server(key))]

    async def server_stages(self, server_keys: Sequence[str], chunk: int) -> list[str | None]:
        return [self.hashes.get(self.keys.server(key), {}).get(ServerField.STAGE) for key in server_keys]

    async def tenant_overview(self, tenants: Sequence[str]) -> list[tuple[list[str], PauseState]]:
        return [(await self.tenant_servers(tenant), self._pause(tenant)) for tenant in tenants]

    async def notifications(self, tenant_id: str, limit: int) -> list[bytes]:
        return list(self.lists.get(self.keys.tenant_notifications(tenant_id), [])[:max(limit, 0)])

    async def webhook_delivered_at(self, tenant_id: str, notification_id: str) -> float | None:
        return self.zsets.get(self.keys.tenant_webhook_delivered(tenant_id), {}).get(notification_id)

    async def mark_webhook_delivered(self, tenant_id: str, notification_id: str, now: float, ttl_s: int) -> None:
        delivered = self.zsets.setdefault(self.keys.tenant_webhook_delivered(tenant_id), {})
        delivered[notification_id] = now
        for stale in [member for member, score in delivered.items() if score <= now - ttl_s]:
            del delivered[stale]
        self._drop_empty()
