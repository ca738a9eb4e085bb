"""What goes into and comes out of a state store, shared by the Redis and the in-memory store:
observations, verdict commits, outbox records, report reads and the pause-hash mapping.

Pure data and pure functions: nothing here talks to Redis.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from processors.enforcement.pauses import PauseState
from processors.state.keys import PauseField

T = TypeVar("T")
SET_CAP = 64  # client IPs / HELO names remembered per server
# Elements of one variadic argument list per Redis call (event ids, evidence items, set members).
# Lua's unpack() fails near 8,000 values (its C stack), and a long script blocks every client.
ARGUMENTS_MAX = 1000
TIMER_BATCH = 500  # due items read per round trip by the timer


@dataclass(slots=True)
class Observation:
    """One batch's worth of one server's messages, folded for ``observe.lua``."""

    server_key: str
    tenant_id: str
    server: str
    first_at: float
    last_at: float
    evidence: list[dict[str, Any]]
    latest: dict[str, Any]
    ips: list[str]
    helos: list[str]
    event_ids_by_day: dict[str, list[str]]


@dataclass(slots=True)
class Commit:
    server_key: str
    fingerprint: str
    verdict_prefix: bytes
    verdict_suffix: bytes
    stage: int
    issued_at: float
    kafka_key: str
    history: bytes
    action: str  # for metrics: report / throttle / block / paused / remediated
    notifications: list[bytes]  # outbox records


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    outbox: str
    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class ServerReport:
    """What a report row needs of one server: its hash, IP and HELO sets, messages per day."""

    server_key: str
    fields: dict[str, str]
    ips: list[str]
    helos: list[str]
    counts: list[tuple[str, int]]  # (YYYY-MM-DD, messages that day), in the order asked for


# The answer of observe() per observation: (state hash fields, client IPs, outbox length)
ObservedState = tuple[dict[str, str], list[str], int]


class CommandState:
    """What :meth:`record_command` found: the command was applied now, or before (still open / closed)."""

    APPLIED = "applied"
    OPEN = "open"
    CLOSED = "closed"


class LeaseState:
    ACQUIRED = "acquired"
    RENEWED = "renewed"
    HELD_ELSEWHERE = "held_elsewhere"


def chunked(items: Sequence[T], size: int | None = None) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (default :data:`ARGUMENTS_MAX`)."""
    size = size or ARGUMENTS_MAX
    for start in range(0, len(items), size):
        yield items[start:start + size]


def observation_parts(obs: Observation, size: int | None = None) -> list[Observation]:
    """``obs`` split so that no part carries more than ``size`` event ids or evidence items.

    Parts keep the event-time order of the evidence and the batch's scalar fields (first/last
    seen, latest message, IPs, HELO names), so each part is a valid observation on its own; folding
    them in order equals folding ``obs`` whole."""
    size = size or ARGUMENTS_MAX
    ids = [(day, event_id) for day in sorted(obs.event_ids_by_day) for event_id in obs.event_ids_by_day[day]]
    count = max(1, -(-len(ids) // size), -(-len(obs.evidence) // size))
    if count == 1:
        return [obs]
    parts = []
    for index in range(count):
        by_day: dict[str, list[str]] = {}
        for day, event_id in ids[index * size:(index + 1) * size]:
            by_day.setdefault(day, []).append(event_id)
        parts.append(replace(obs, evidence=obs.evidence[index * size:(index + 1) * size], event_ids_by_day=by_day))
    return parts


def outbox_record(topic: str, key: str, value: bytes) -> bytes:
    return f"{topic}\n{key}\n".encode() + value


def parse_outbox(outbox: str, raw: bytes) -> OutboxRecord:
    topic, key, value = raw.split(b"\n", 2)
    return OutboxRecord(outbox, topic.decode(), key, value)


def text(value: Any) -> str:
    """A Redis reply item as text (the client returns bytes)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def pause_state_from_hash(raw: Any) -> PauseState:
    fields = raw if isinstance(raw, dict) else {}
    decoded = {text(k): text(v) for k, v in fields.items()}
    prefix = PauseField.USED_PREFIX
    used = tuple(sorted((int(k[len(prefix):]), int(v)) for k, v in decoded.items() if k.startswith(prefix)))
    until = decoded.get(PauseField.UNTIL)
    started = decoded.get(PauseField.STARTED_AT)
    charged = decoded.get(PauseField.CHARGED_YEAR)
    return PauseState(
        until=datetime.fromisoformat(until) if until else None,
        started_at=datetime.fromisoformat(started) if started else None,
        charged_year=int(charged) if charged else None,
        used=used,
    )


def pause_state_to_hash(state: PauseState) -> dict[str, str]:
    fields = {f"{PauseField.USED_PREFIX}{year}": str(days) for year, days in state.used}
    if state.until is not None:
        fields[PauseField.UNTIL] = state.until.isoformat()
    if state.started_at is not None:
        fields[PauseField.STARTED_AT] = state.started_at.isoformat()
    if state.charged_year is not None:
        fields[PauseField.CHARGED_YEAR] = str(state.charged_year)
    return fields
