"""Report rows: one per server of a tenant, with every field of ``Get-OnPremServerReportInfo``.

The row is computed from the server's Redis state (``observe.lua`` and ``commit_verdict.lua`` fields,
see :mod:`processors.state.keys`), the enforcement policy (stage table) and one instant ``now``:

- ``FirstDetectedDate``: ``detected_at`` (present while the server is vulnerable);
- ``ThrottleEnabledDate`` / ``BlockingEnabledDate``: 00:00 UTC of detection date + ``start_day`` of
  the first throttling / blocking stage of the policy;
- ``NextStage*``: the stage that follows the server's stage at ``now`` according to the policy;
- ``reply_now``: the SMTP reply an edge gives the server's mail at ``now``, from the committed
  verdict with the edge's rules (:mod:`edge.verdicts`): paused, not yet effective or expired means
  accept; otherwise the window rule of :mod:`processors.events.verdict` (``250`` outside the window).
  A verdict in shadow mode accepts, and ``withheld`` names the reply the edges count instead;
- ``shadow``: the verdict in force is in shadow mode (a ``shadow`` value other than false counts, as
  at the edges).

Everything here is pure; :mod:`processors.report.reader` reads Redis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from processors.enforcement.pauses import PauseState
from processors.enforcement.policy import VULNERABLE_STATUSES, EnforcementPolicy
from processors.enforcement.verdicts import from_epoch, rfc3339
from processors.events.verdict import BLOCK, THROTTLE, window_action, window_position
from processors.state.keys import ServerField

HISTORY_DAYS = 30
ACCEPT_REPLY = "250"


@dataclass(frozen=True, slots=True)
class ReplyNow:
    action: str  # accept | throttle | block
    reply: str   # the exact SMTP reply line ("250" for acceptance)
    reason: str  # no-verdict | not-enforced | paused | not-yet-effective | expired | outside-window |
    # throttle-window | block-window | shadow-throttle-window | shadow-block-window
    changes_at: datetime | None = None  # when the action changes next (window edge), if enforced
    withheld: str | None = None  # shadow mode: the reply the edges count instead of giving it

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "reply": self.reply, "reason": self.reason,
                "changes_at": rfc3339(self.changes_at), "withheld": self.withheld}


def is_shadow(verdict: Mapping[str, Any] | None) -> bool:
    """The edges' reading of a verdict's ``shadow`` flag: absent or false enforces, anything else is shadow."""
    return verdict is not None and verdict.get("shadow", False) is not False


def reply_now(verdict: Mapping[str, Any] | None, now: datetime) -> ReplyNow:
    """The reply an edge gives right now, from a ``patchgate.verdict/1`` document."""
    reply = _enforced_reply_now(verdict, now)
    if reply.action != "accept" and is_shadow(verdict):
        return ReplyNow("accept", ACCEPT_REPLY, "shadow-" + reply.reason, reply.changes_at, withheld=reply.reply)
    return reply


def _enforced_reply_now(verdict: Mapping[str, Any] | None, now: datetime) -> ReplyNow:
    """The reply the verdict gives right now when it is not in shadow mode."""
    if not verdict:
        return ReplyNow("accept", ACCEPT_REPLY, "no-verdict")
    try:
        block = int(verdict.get("block_minutes") or 0)
        throttle = int(verdict.get("throttle_minutes") or 0)
        offset = int(verdict.get("window_offset") or 0) % 60
        effective = _parse_time(verdict.get("effective_at"))
        valid_until = _parse_time(verdict.get("valid_until"))
        paused_until = _parse_time(verdict.get("paused_until"))
        replies = verdict.get("replies") or {}
        stage = int(verdict.get("stage") or 0)
        if not isinstance(replies, dict):
            raise TypeError("replies")
    except (TypeError, ValueError):
        return ReplyNow("accept", ACCEPT_REPLY, "no-verdict")
    if stage == 0 or (block == 0 and throttle == 0):
        return ReplyNow("accept", ACCEPT_REPLY, "not-enforced")
    if effective is not None and now < effective:
        return ReplyNow("accept", ACCEPT_REPLY, "not-yet-effective", effective)
    if valid_until is not None and now >= valid_until:
        return ReplyNow("accept", ACCEPT_REPLY, "expired")
    if paused_until is not None and now < paused_until:
        return ReplyNow("accept", ACCEPT_REPLY, "paused", paused_until)
    m = window_position(now.minute, offset)
    hour_start = now.replace(second=0, microsecond=0) - timedelta(minutes=m)  # window cycle start
    action = window_action(m, block, throttle)
    if action == BLOCK:
        return ReplyNow(BLOCK, str(replies.get("block", "")), "block-window", hour_start + timedelta(minutes=block))
    if action == THROTTLE:
        return ReplyNow(THROTTLE, str(replies.get("throttle", "")), "throttle-window",
                        hour_start + timedelta(minutes=block + throttle))
    return ReplyNow("accept", ACCEPT_REPLY, "outside-window", hour_start + timedelta(minutes=60))


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def day_keys(now: datetime, days: int = HISTORY_DAYS) -> list[str]:
    """The last ``days`` UTC dates up to and including today, oldest first (YYYY-MM-DD)."""
    today = now.astimezone(UTC).date()
    return [(today - timedelta(days=offset)).isoformat() for offset in range(days - 1, -1, -1)]


@dataclass(frozen=True, slots=True)
class ServerRow:
    """One report line. Field names of ``Get-OnPremServerReportInfo`` are kept as they are."""

    server_key: str
    tenant_id: str
    ServerFQDN: str
    Build: str | None
    BuildLong: str | None
    ExchangeServer: str | None
    ReleaseName: str | None
    FirstDetectedDate: datetime | None
    RecommendedBuildVersions: tuple[dict[str, Any], ...]
    ThrottleEnabledDate: datetime | None
    BlockingEnabledDate: datetime | None
    NextStage: int | None
    NextStageThrottleRate: int | None
    NextStageBlockRate: int | None
    NextStageStartDate: datetime | None
    status: str
    rule: str | None
    reason: str | None
    connector_type: str | None
    first_seen: datetime | None
    last_seen: datetime | None
    client_ips: tuple[str, ...]
    helos: tuple[str, ...]
    messages_per_day: tuple[tuple[str, int], ...]  # (YYYY-MM-DD, count), oldest first
    stage: int
    stage_due: int  # the stage the policy puts the server in at ``now`` (the worker commits it)
    throttle_minutes: int
    block_minutes: int
    window_offset: int | None
    paused_until: datetime | None
    reply_now: ReplyNow
    verdict_sequence: int | None
    #: the stable id of the product whose stamp decided (``exchange``, ``exim``, ...) and its version;
    #: added after the Get-OnPremServerReportInfo fields, ``None`` in state written before them
    product: str | None = None
    version: str | None = None
    shadow: bool = False  # the verdict in force is in shadow mode: the edges accept and count

    @property
    def enforced(self) -> bool:
        return self.stage > 0 and (self.throttle_minutes > 0 or self.block_minutes > 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "server_key": self.server_key,
            "tenant_id": self.tenant_id,
            "ServerFQDN": self.ServerFQDN,
            "Build": self.Build,
            "BuildLong": self.BuildLong,
            "ExchangeServer": self.ExchangeServer,
            "ReleaseName": self.ReleaseName,
            "product": self.product,
            "version": self.version,
            "FirstDetectedDate": rfc3339(self.FirstDetectedDate),
            "RecommendedBuildVersions": [dict(r) for r in self.RecommendedBuildVersions],
            "ThrottleEnabledDate": rfc3339(self.ThrottleEnabledDate),
            "BlockingEnabledDate": rfc3339(self.BlockingEnabledDate),
            "NextStage": self.NextStage,
            "NextStageThrottleRate": self.NextStageThrottleRate,
            "NextStageBlockRate": self.NextStageBlockRate,
            "NextStageStartDate": rfc3339(self.NextStageStartDate),
            "status": self.status,
            "rule": self.rule,
            "reason": self.reason,
            "connector_type": self.connector_type,
            "first_seen": rfc3339(self.first_seen),
            "last_seen": rfc3339(self.last_seen),
            "client_ips": list(self.client_ips),
            "helos": list(self.helos),
            "messages_per_day": [{"date": day, "messages": count} for day, count in self.messages_per_day],
            "stage": self.stage,
            "stage_due": self.stage_due,
            "throttle_minutes": self.throttle_minutes,
            "block_minutes": self.block_minutes,
            "window_offset": self.window_offset,
            "paused_until": rfc3339(self.paused_until),
            "reply_now": self.reply_now.to_json(),
            "verdict_sequence": self.verdict_sequence,
            "shadow": self.shadow,
        }


def _json_field(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def build_row(server_key: str, fields: Mapping[str, str], ips: Sequence[str], helos: Sequence[str],
              day_counts: Sequence[tuple[str, int]], policy: EnforcementPolicy, now: datetime) -> ServerRow:
    """One report row from a server's hash (decoded), its sets and its per-day message counts."""
    verdict = _json_field(fields.get(ServerField.VERDICT))
    if not isinstance(verdict, dict):
        verdict = None
    recommended_raw = _json_field(fields.get(ServerField.RECOMMENDED))
    recommended = tuple(
        {"short": str(r.get("short")), "long": str(r.get("long")), "name": r.get("name")}
        for r in (recommended_raw if isinstance(recommended_raw, list) else []) if isinstance(r, dict)
    )
    status = fields.get(ServerField.STATUS) or fields.get(ServerField.LAST_STATUS) or "no_build"
    detected_at = _epoch(fields.get(ServerField.DETECTED_AT))
    vulnerable = detected_at is not None and status in VULNERABLE_STATUSES
    connector_type = fields.get(ServerField.CONNECTOR_TYPE)
    # a server seen over a connector outside the enforcement scope (e.g. Partner) is reported, never
    # enforced: no throttle or block dates, no next stage
    enforceable = connector_type is None or connector_type in policy.enforced_connector_types
    throttle_at = block_at = next_at = None
    next_stage = next_throttle = next_block = None
    stage_due = 0
    if vulnerable and enforceable and detected_at is not None:
        detected_on: date = detected_at.date()
        first_throttle = policy.first_stage_where("throttle")
        first_block = policy.first_stage_where("block")
        throttle_at = policy.stage_start(detected_on, first_throttle) if first_throttle else None
        block_at = policy.stage_start(detected_on, first_block) if first_block else None
        position = policy.position(detected_on, now)
        stage_due = position.stage.number
        if position.next_stage is not None:
            next_stage = position.next_stage.number
            next_throttle = position.next_stage.throttle_minutes
            next_block = position.next_stage.block_minutes
            next_at = position.next_at
    stage = int(fields.get(ServerField.STAGE) or 0)
    sequence = fields.get(ServerField.SEQUENCE)
    return ServerRow(
        server_key=server_key,
        tenant_id=fields.get(ServerField.TENANT_ID, server_key.partition("/")[0]),
        ServerFQDN=fields.get(ServerField.SERVER, server_key.partition("/")[2]),
        Build=fields.get(ServerField.BUILD),
        BuildLong=fields.get(ServerField.BUILD_LONG),
        ExchangeServer=fields.get(ServerField.PRODUCT),
        ReleaseName=fields.get(ServerField.RELEASE_NAME),
        FirstDetectedDate=detected_at if vulnerable else None,
        RecommendedBuildVersions=recommended,
        ThrottleEnabledDate=throttle_at,
        BlockingEnabledDate=block_at,
        NextStage=next_stage,
        NextStageThrottleRate=next_throttle,
        NextStageBlockRate=next_block,
        NextStageStartDate=next_at,
        status=status,
        rule=fields.get(ServerField.RULE) or fields.get(ServerField.LAST_RULE),
        reason=fields.get(ServerField.REASON),
        connector_type=connector_type,
        first_seen=_epoch(fields.get(ServerField.FIRST_SEEN)),
        last_seen=_epoch(fields.get(ServerField.LAST_SEEN)),
        client_ips=tuple(sorted(ips)),
        helos=tuple(sorted(helos)),
        messages_per_day=tuple(day_counts),
        stage=stage,
        stage_due=stage_due,
        throttle_minutes=int(verdict.get("throttle_minutes", 0)) if verdict and stage else 0,
        block_minutes=int(verdict.get("block_minutes", 0)) if verdict and stage else 0,
        window_offset=int(verdict["window_offset"]) if verdict and "window_offset" in verdict else None,
        paused_until=_parse_time(verdict.get("paused_until")) if verdict else None,
        reply_now=reply_now(verdict, now),
        verdict_sequence=int(sequence) if sequence and sequence.isdigit() else None,
        product=fields.get(ServerField.PRODUCT_ID),
        version=fields.get(ServerField.VERSION),
        shadow=is_shadow(verdict),
    )


def _epoch(value: str | None) -> datetime | None:
    try:
        return from_epoch(value)
    except (TypeError, ValueError, OverflowError):
        return None


@dataclass(frozen=True, slots=True)
class PauseSummary:
    tenant_id: str
    active: bool
    paused_until: datetime | None
    started_at: datetime | None
    used_days: tuple[tuple[int, int], ...]
    days_per_year: int
    max_days_per_request: int
    days_left_this_year: int
    year: int

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "active": self.active,
            "paused_until": rfc3339(self.paused_until),
            "started_at": rfc3339(self.started_at),
            "used_days": {str(year): days for year, days in self.used_days},
            "year": self.year,
            "days_per_year": self.days_per_year,
            "max_days_per_request": self.max_days_per_request,
            "days_left_this_year": self.days_left_this_year,
        }


def pause_summary(tenant_id: str, state: PauseState, policy: EnforcementPolicy, now: datetime) -> PauseSummary:
    active = state.active_at(now)
    return PauseSummary(
        tenant_id=tenant_id,
        active=active,
        paused_until=state.until if active else None,
        started_at=state.started_at if active else None,
        used_days=state.used,
        days_per_year=policy.pauses.days_per_year,
        max_days_per_request=policy.pauses.max_days_per_request,
        days_left_this_year=max(0, policy.pauses.days_per_year - state.used_in(now.year)),
        year=now.year,
    )


def stage_counts(rows: Sequence[ServerRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.stage)] = counts.get(str(row.stage), 0) + 1
    return dict(sorted(counts.items(), key=lambda item: int(item[0])))


ESTIMATE_NOTE = ("Throttled and blocked counts are estimates: messages per day x the minutes per hour of the "
                 "stage the server was in that day / 60 (a running pause counts as zero). Throttled mail is "
                 "retried by the sender, so it is usually delivered later.")


def daily_totals(rows: Sequence[ServerRow], policy: EnforcementPolicy,
                 pause: PauseSummary | None = None) -> list[dict[str, Any]]:
    """Messages per day across ``rows`` with estimated throttled/blocked counts (see ESTIMATE_NOTE)."""
    totals: dict[str, list[float]] = {}
    for row in rows:
        detected_on = row.FirstDetectedDate.date() if row.FirstDetectedDate and row.stage > 0 else None
        for day, count in row.messages_per_day:
            entry = totals.setdefault(day, [0, 0.0, 0.0])
            entry[0] += count
            if detected_on is None or not count:
                continue
            day_date = date.fromisoformat(day)
            if day_date < detected_on:
                continue
            noon = datetime(day_date.year, day_date.month, day_date.day, 12, tzinfo=UTC)
            if pause is not None and pause.active and pause.started_at and pause.paused_until \
                    and pause.started_at <= noon < pause.paused_until:
                continue
            stage = policy.position(detected_on, noon).stage
            entry[1] += count * stage.throttle_minutes / 60
            entry[2] += count * stage.block_minutes / 60
    return [{"date": day, "messages": int(values[0]), "throttled_estimate": round(values[1]),
             "blocked_estimate": round(values[2])} for day, values in sorted(totals.items())]
