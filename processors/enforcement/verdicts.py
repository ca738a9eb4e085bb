"""From a server's state to its verdict and notifications, at one instant of event time.

``evaluate`` is pure. The caller commits the result with a compare-and-set on ``fingerprint``
(``commit_verdict.lua``), so the same transition is published once however often it is computed.

Rules:
- A server is enforced while it has a detection date, its latest build evidence is vulnerable
  (``behind``/``unsupported``) and the connector it arrives over is in the enforcement scope.
  Evidence that is not build-bearing (relay, stripped headers) never lifts or starts enforcement.
- Stage time never runs backwards: a late event is evaluated at the time of the last verdict.
- Servers never enforced get no verdict; an enforced server that stops being enforced gets one
  stage-0 verdict (``remediated``), which lifts enforcement at the edges.
- Shadow mode (policy ``[shadow]``, per tenant): everything above runs unchanged, and the verdict and
  its notifications say ``"shadow": true`` (edges accept and count the reply). Shadow mode is part of
  the fingerprint only while on, so switching it either way commits a new verdict for every server
  with one in force, and fingerprints of tenants never shadowed stay what they were.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

from processors.enforcement.pauses import PauseState
from processors.enforcement.policy import VULNERABLE_STATUSES, EnforcementPolicy
from processors.events.notification import Notification, notification
from processors.events.times import rfc3339
from processors.events.verdict import recommended_build, verdict_parts

__all__ = ["Evaluation", "ServerState", "evaluate", "from_epoch", "rfc3339", "window_offset"]


#: Appended to the text of a shadowed tenant's notifications.
SHADOW_NOTE = (" Shadow mode: nothing is throttled or blocked yet; the edges accept this server's mail and count "
               "the reply they would give.")


def from_epoch(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(float(value), UTC)


def window_offset(server_key: str) -> int:
    """A stable per-server minute offset so throttled servers do not all retry at the same minute."""
    return zlib.crc32(server_key.encode("utf-8")) % 60


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerState:
    """The fields of a server's Redis hash that enforcement needs."""

    server_key: str
    tenant_id: str
    server: str
    status: str | None = None
    rule: str | None = None
    product: str | None = None
    build: str | None = None
    release_name: str | None = None
    #: the product's stable id (``exchange``, ``exim``, ...) and its stamped version
    product_id: str | None = None
    version: str | None = None
    recommended: tuple[dict[str, Any], ...] = ()
    detected_at: datetime | None = None
    connector_type: str | None = None
    client_ips: tuple[str, ...] = ()
    stage: int = 0
    issued_at: datetime | None = None
    has_verdict: bool = False
    #: the fingerprint of the verdict last committed: an evaluation that comes to it again builds none
    fingerprint: str | None = None

    @classmethod
    def from_hash(cls, server_key: str, fields: Mapping[str, str], ips: Sequence[str] = ()) -> ServerState:
        recommended_raw = fields.get("recommended")
        return cls(
            server_key=server_key,
            tenant_id=fields.get("tenant_id", server_key.partition("/")[0]),
            server=fields.get("server", server_key.partition("/")[2]),
            status=fields.get("status"),
            rule=fields.get("rule"),
            product=fields.get("product"),
            build=fields.get("build"),
            release_name=fields.get("release_name"),
            product_id=fields.get("product_id"),
            version=fields.get("version"),
            recommended=tuple(orjson.loads(recommended_raw)) if recommended_raw else (),
            detected_at=from_epoch(fields.get("detected_at")),
            connector_type=fields.get("connector_type"),
            client_ips=tuple(sorted(ips))[:64],
            stage=int(fields.get("stage", 0) or 0),
            issued_at=from_epoch(fields.get("issued_at")),
            has_verdict="sequence" in fields,
            fingerprint=fields.get("fingerprint"),
        )

    def enforced_by(self, policy: EnforcementPolicy) -> bool:
        return (
            self.detected_at is not None
            and self.status in VULNERABLE_STATUSES
            and (self.connector_type is None or self.connector_type in policy.enforced_connector_types)
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Evaluation:
    """What should be true now. ``verdict_prefix``/``verdict_suffix`` are None when the server needs
    no new verdict: none at all (``fingerprint`` None) or the one in force (``fingerprint`` equal to
    the committed one); a verdict's notifications come only with it."""

    stage: int
    fingerprint: str | None
    verdict_prefix: bytes | None
    verdict_suffix: bytes | None
    notifications: tuple[Notification, ...]
    once_notifications: tuple[Notification, ...]  # not tied to a verdict change (stage_upcoming)
    next_due: datetime | None
    at: datetime
    history: dict[str, Any] = field(default_factory=dict)
    action: str = "none"  # report / throttle / block / paused / remediated


def evaluate(state: ServerState, policy: EnforcementPolicy, pause: PauseState, at: datetime) -> Evaluation:
    if state.issued_at is not None and state.issued_at > at:
        at = state.issued_at  # never evaluate a verdict earlier than the one already issued
    if not state.enforced_by(policy):
        if state.stage == 0:
            return Evaluation(
                stage=0,
                fingerprint=None,
                verdict_prefix=None,
                verdict_suffix=None,
                notifications=(),
                once_notifications=(),
                next_due=None,
                at=at,
            )
        return _verdict(state, policy, at, stage=0, throttle=0, block=0, effective_at=at, valid_until=None,
                        paused_until=None, notifications=(_remediated(state, policy, at),), once=(), next_due=None)
    assert state.detected_at is not None
    detected_on = state.detected_at.astimezone(UTC).date()
    position = policy.position(detected_on, at)
    stage = position.stage
    paused_until = pause.until if pause.active_at(at) else None
    notifications: list[Notification] = []
    if state.stage == 0:
        notifications.append(_detected(state, policy, detected_on, at, stage.number))
    elif stage.number > state.stage:
        notifications.append(_stage_started(state, policy, detected_on, at, stage.number))
    once: list[Notification] = []
    due: list[datetime] = [t for t in (position.next_at, paused_until) if t is not None]
    for notice_at, upcoming in policy.upcoming_notices(detected_on):
        starts = policy.stage_start(detected_on, upcoming)
        if notice_at <= at < starts:
            once.append(_stage_upcoming(state, policy, detected_on, at, upcoming.number, starts))
        elif at < notice_at:
            due.append(notice_at)
    return _verdict(
        state, policy, at, stage=stage.number, throttle=stage.throttle_minutes, block=stage.block_minutes,
        effective_at=position.started_at, valid_until=position.next_at, paused_until=paused_until,
        notifications=tuple(notifications), once=tuple(once), next_due=min(due) if due else None,
        detected_on=detected_on,
    )


def _verdict(state: ServerState, policy: EnforcementPolicy, at: datetime, *, stage: int, throttle: int, block: int,
             effective_at: datetime, valid_until: datetime | None, paused_until: datetime | None,
             notifications: tuple[Notification, ...], once: tuple[Notification, ...],
             next_due: datetime | None, detected_on: date | None = None) -> Evaluation:
    shadow = policy.shadow.applies_to(state.tenant_id)
    # What makes a new verdict: enforcement and its explanation. A change of the recommended builds
    # alone (a newer SU ageing past the grace period) does not; the report shows them live.
    fingerprint = "|".join(str(part) for part in (
        stage, rfc3339(paused_until), state.status, state.build or state.version, state.rule, detected_on,
    )) + ("|shadow" if shadow else "")
    action = _action(stage, throttle, block, paused_until)
    if fingerprint == state.fingerprint:  # the verdict in force: nothing to build, nothing to commit
        return Evaluation(stage=stage, fingerprint=fingerprint, verdict_prefix=None, verdict_suffix=None,
                          notifications=(), once_notifications=once, next_due=next_due, at=at, action=action)
    replies = _replies(state, policy, throttle, block)
    prefix, suffix = verdict_parts(
        server_key=state.server_key, tenant_id=state.tenant_id, server=state.server, issued_at=at,
        effective_at=effective_at, valid_until=valid_until, stage=stage, throttle_minutes=throttle,
        block_minutes=block, window_offset=window_offset(state.server_key),
        throttle_reply=replies["throttle"], block_reply=replies["block"], paused_until=paused_until,
        product=state.product, build=state.build, product_id=state.product_id, version=state.version,
        status=state.status or "no_build", rule=state.rule or "none",
        recommended_builds=[recommended_build(r) for r in state.recommended], client_ips=state.client_ips,
        shadow=shadow,
    )
    history = {"at": rfc3339(at), "stage": stage, "status": state.status, "build": state.build,
               "paused_until": rfc3339(paused_until), "detected_on": detected_on.isoformat() if detected_on else None}
    if shadow:
        history["shadow"] = True
    return Evaluation(
        stage=stage,
        fingerprint=fingerprint,
        verdict_prefix=prefix,
        verdict_suffix=suffix,
        notifications=notifications,
        once_notifications=once,
        next_due=next_due,
        at=at,
        history=history,
        action=action,
    )


def _action(stage: int, throttle: int, block: int, paused_until: datetime | None) -> str:
    """What a verdict does, as the worker's metrics count it."""
    if stage == 0:
        return "remediated"
    if paused_until is not None:
        return "paused"
    return "block" if block else ("throttle" if throttle else "report")


def _notification(state: ServerState, policy: EnforcementPolicy, kind: str, at: datetime, stage: int,
                  next_at: datetime | None, identity: str, text: str) -> Notification:
    """A server's notification; a shadowed tenant's says ``"shadow": true`` and ends with the shadow note."""
    shadow = policy.shadow.applies_to(state.tenant_id)
    return notification(
        tenant_id=state.tenant_id, kind=kind, identity=identity, at=at, text=text + (SHADOW_NOTE if shadow else ""),
        shadow=shadow, server_key=state.server_key,
        server=state.server, stage=stage, next_stage_at=next_at, build=state.build, product_id=state.product_id,
        version=state.version, recommended_builds=[recommended_build(r) for r in state.recommended],
    )


def _describe(state: ServerState) -> str:
    product = state.product or "an Exchange server"
    build = state.build or (state.version if _other_product(state) else None)
    return f"{state.server} ({product}{f' {build}' if build else ''})"


def _other_product(state: ServerState) -> bool:
    """A server whose stamp named a product other than Exchange (``product_id`` set by newer workers)."""
    return state.product_id is not None and state.product_id != "exchange"


def _replies(state: ServerState, policy: EnforcementPolicy, throttle: int, block: int) -> dict[str, str]:
    """The SMTP replies; for a product other than Exchange they name it, its version and the remedy."""
    software = install = None
    if _other_product(state):
        software = f"{state.product or state.product_id} {state.version or ''}".strip()
        first = state.recommended[0] if state.recommended else None
        install = str(first.get("name") or first.get("short")) if first is not None else None
    return {"throttle": policy.throttle_reply(throttle, software, install),
            "block": policy.block_reply(block, software, install)}


def _remedy(state: ServerState) -> str:
    if not state.recommended:
        return "a supported build"
    first = state.recommended[0]
    return f"{first.get('short')} ({first.get('name')})" if first.get("name") else str(first.get("short"))


def _rate(policy: EnforcementPolicy, stage_number: int) -> str:
    stage = policy.stages[stage_number - 1]
    parts = []
    if stage.block_minutes:
        parts.append(f"blocked for {stage.block_minutes} mins/hr")
    if stage.throttle_minutes:
        parts.append(f"throttled for {stage.throttle_minutes} mins/hr")
    return " and ".join(parts) or "reported only"


def _detected(state: ServerState, policy: EnforcementPolicy, detected_on: date, at: datetime,
              stage: int) -> Notification:
    first = policy.first_stage_where("throttle")
    next_at = policy.stage_start(detected_on, first) if first and first.number > stage else None
    when = f" from {next_at:%Y-%m-%d}" if next_at else ""
    text = (f"{_describe(state)} was detected as {state.status} (rule {state.rule}); mail from it will be "
            f"{_rate(policy, max(stage, first.number if first else stage))}{when} unless it is updated "
            f"to {_remedy(state)}.")
    return _notification(state, policy, "detected", at, stage, next_at, f"{detected_on}", text)


def _stage_started(state: ServerState, policy: EnforcementPolicy, detected_on: date, at: datetime,
                   stage: int) -> Notification:
    following = policy.stages[stage] if stage < len(policy.stages) else None
    next_at = policy.stage_start(detected_on, following) if following else None
    text = (f"Mail from {_describe(state)} is now {_rate(policy, stage)} (stage {stage}); "
            f"update it to {_remedy(state)} to lift this.")
    return _notification(state, policy, "stage_started", at, stage, next_at, f"{detected_on}|{stage}", text)


def _stage_upcoming(state: ServerState, policy: EnforcementPolicy, detected_on: date, at: datetime,
                    stage: int, starts: datetime) -> Notification:
    text = (f"Mail from {_describe(state)} will be {_rate(policy, stage)} from {starts:%Y-%m-%d} "
            f"(stage {stage}) unless it is updated to {_remedy(state)}.")
    return _notification(state, policy, "stage_upcoming", at, stage, starts, f"{detected_on}|{stage}", text)


def _remediated(state: ServerState, policy: EnforcementPolicy, at: datetime) -> Notification:
    why = f"now runs {state.build} ({state.status})" if state.build else f"is now {state.status}"
    text = f"{state.server} {why}; throttling and blocking of its mail have stopped."
    return _notification(state, policy, "remediated", at, 0, None, f"{rfc3339(at)}", text)
