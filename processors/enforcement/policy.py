"""The enforcement part of the policy file: stage table, notice lead time, replies, pause quota.

Read from the ``[enforcement]`` and ``[pauses]`` tables of the policy TOML (the packaged
``processors/data/policy.toml`` documents every key and its default). Validation names the key
and the rule, e.g. ``enforcement.stages[3].start_day: must be greater than the previous stage's``.

Stage N starts at 00:00 UTC of (detection date + ``start_day``); with the default table throttling
starts 30 days and blocking 60 days after the first detection, as in Exchange Online's reports.

The ``[shadow]`` table (shadow mode, for rolling enforcement out) is read here too: ``default`` for
every tenant and ``[shadow.tenants]`` overrides by tenant id (:class:`ShadowPolicy`). Unknown
top-level tables are refused, so a misspelt ``[shadw]`` cannot silently leave shadow mode off.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from processors.errors import PatchgateError

VULNERABLE_STATUSES = frozenset({"behind", "unsupported"})

#: The top-level tables of a policy file; any other is refused (a typo must not go unnoticed).
POLICY_TABLES = frozenset({"classification", "products", "enforcement", "pauses", "shadow"})
#: A tenant id, as in the metadata contract (``schemas/metadata.v1.json#/$defs/tenant_id``).
TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
#: The most per-tenant shadow overrides a policy may list (a bound on the table read at every reload).
MAX_SHADOW_TENANTS = 100_000


class PolicyError(PatchgateError, ValueError):
    """The policy file is invalid; the message names the key."""


@dataclass(frozen=True, slots=True)
class Stage:
    number: int
    start_day: int
    throttle_minutes: int
    block_minutes: int

    @property
    def enforcing(self) -> bool:
        return self.throttle_minutes > 0 or self.block_minutes > 0


@dataclass(frozen=True, slots=True)
class StagePosition:
    """Where a server stands at one instant: its stage, when it began and what comes next."""

    stage: Stage
    started_at: datetime
    next_stage: Stage | None
    next_at: datetime | None


@dataclass(frozen=True, slots=True)
class PausePolicy:
    days_per_year: int = 90
    max_days_per_request: int = 90


@dataclass(frozen=True, slots=True)
class ShadowPolicy:
    """Which tenants run in shadow mode: enforcement is computed and published, edges accept.

    ``default`` applies to every tenant not named in an override; ``shadowed`` / ``enforced`` are
    the tenants ``[shadow.tenants]`` sets to true / false.
    """

    default: bool = False
    shadowed: frozenset[str] = frozenset()
    enforced: frozenset[str] = frozenset()

    def applies_to(self, tenant_id: str) -> bool:
        """True when ``tenant_id``'s verdicts are in shadow mode."""
        if tenant_id in self.shadowed:
            return True
        return self.default and tenant_id not in self.enforced


@dataclass(frozen=True, kw_only=True, slots=True)
class EnforcementPolicy:
    stages: tuple[Stage, ...]
    upcoming_lead_days: int = 7
    enforced_connector_types: frozenset[str] = frozenset({"OnPremises"})
    service_name: str = "patchgate"
    help_url: str = ""
    pauses: PausePolicy = field(default_factory=PausePolicy)
    shadow: ShadowPolicy = field(default_factory=ShadowPolicy)

    def position(self, detected_on: date, at: datetime) -> StagePosition:
        """The stage at ``at`` of a server first detected on ``detected_on`` (UTC date)."""
        days = (at.astimezone(UTC).date() - detected_on).days
        index = 0
        for candidate, stage in enumerate(self.stages):
            if stage.start_day <= days:
                index = candidate
        stage = self.stages[index]
        following = self.stages[index + 1] if index + 1 < len(self.stages) else None
        return StagePosition(
            stage=stage,
            started_at=self.stage_start(detected_on, stage),
            next_stage=following,
            next_at=self.stage_start(detected_on, following) if following else None,
        )

    @staticmethod
    def stage_start(detected_on: date, stage: Stage) -> datetime:
        """Midnight UTC of the stage's first day; the last representable day if that lies beyond it."""
        return _midnight_after(detected_on, stage.start_day)

    def first_stage_where(self, predicate: str) -> Stage | None:
        """The first stage that throttles (``"throttle"``) or blocks (``"block"``)."""
        for stage in self.stages:
            if (predicate == "throttle" and stage.enforcing) or (predicate == "block" and stage.block_minutes):
                return stage
        return None

    def upcoming_notices(self, detected_on: date) -> list[tuple[datetime, Stage]]:
        """(notice time, stage) for the first throttling and the first blocking stage."""
        notices: list[tuple[datetime, Stage]] = []
        for kind in ("throttle", "block"):
            stage = self.first_stage_where(kind)
            if stage is not None and all(stage is not s for _, s in notices):
                start = self.stage_start(detected_on, stage)
                notices.append((start - timedelta(days=self.upcoming_lead_days), stage))
        return notices

    def throttle_reply(self, minutes: int, software: str | None = None, install: str | None = None) -> str:
        return self._reply("450 4.7.230", "throttled", minutes, software, install)

    def block_reply(self, minutes: int, software: str | None = None, install: str | None = None) -> str:
        return self._reply("550 5.7.230", "blocked", minutes, software, install)

    def _reply(self, code: str, verb: str, minutes: int, software: str | None = None,
               install: str | None = None) -> str:
        """The reply line; ``software`` (e.g. ``Exim 4.92``) and ``install`` name a non-Exchange
        server's product and what to install instead (Exchange servers keep the original text)."""
        if software:
            remedy = f", install {install[:80]}" if install else ""
            text = (f"{code} Connecting {software[:80]} server is out-of-date{remedy}; connection to "
                    f"{self.service_name} {verb} for {minutes} mins/hr.")
        else:
            text = (f"{code} Connecting Exchange server version is out-of-date; connection to "
                    f"{self.service_name} {verb} for {minutes} mins/hr.")
        if self.help_url:
            text += f" For more information see {self.help_url}."
        return text


def load_enforcement_policy(path: Path | None = None) -> EnforcementPolicy:
    """Load and validate the ``[enforcement]`` and ``[pauses]`` tables of a policy file."""
    if path is None:
        raw = resources.files("processors").joinpath("data/policy.toml").read_bytes()
    else:
        raw = Path(path).read_bytes()
    source = "processors/data/policy.toml" if path is None else str(path)
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PolicyError(f"{source}: policy file is not valid TOML: {error}") from None
    try:
        return enforcement_policy_from_mapping(document)
    except PolicyError as error:
        raise PolicyError(f"{source}: {error}") from None


def enforcement_policy_from_mapping(document: Mapping[str, Any]) -> EnforcementPolicy:
    _only(document, "policy file", set(POLICY_TABLES))
    section = _table(document, "enforcement")
    stages_raw = section.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise PolicyError("enforcement.stages: must be a non-empty array of tables")
    stages: list[Stage] = []
    for index, entry in enumerate(stages_raw):
        where = f"enforcement.stages[{index}]"
        if not isinstance(entry, dict):
            raise PolicyError(f"{where}: must be a table")
        _only(entry, where, {"stage", "start_day", "throttle_minutes", "block_minutes"})
        stage = Stage(
            number=_int(entry, "stage", where, 1, 32),
            start_day=_int(entry, "start_day", where, 0, 3650),
            throttle_minutes=_int(entry, "throttle_minutes", where, 0, 60),
            block_minutes=_int(entry, "block_minutes", where, 0, 60),
        )
        if stage.number != index + 1:
            raise PolicyError(f"{where}.stage: stages must be numbered 1, 2, ... in order; got {stage.number}")
        if index == 0 and stage.start_day != 0:
            raise PolicyError(f"{where}.start_day: the first stage must start on day 0")
        if stages and stage.start_day <= stages[-1].start_day:
            raise PolicyError(f"{where}.start_day: must be greater than the previous stage's "
                              f"({stages[-1].start_day}), got {stage.start_day}")
        if stage.throttle_minutes + stage.block_minutes > 60:
            raise PolicyError(f"{where}: throttle_minutes + block_minutes must not exceed 60 per hour")
        stages.append(stage)
    _only(section, "enforcement", {"stages", "upcoming_lead_days", "enforced_connector_types", "replies"})
    replies = section.get("replies", {})
    if not isinstance(replies, dict):
        raise PolicyError("enforcement.replies: must be a table")
    _only(replies, "enforcement.replies", {"service_name", "help_url"})
    service_name = replies.get("service_name", "patchgate")
    help_url = replies.get("help_url", "")
    for key, value in (("service_name", service_name), ("help_url", help_url)):
        if not isinstance(value, str) or any(c in value for c in "\r\n%") or len(value) > 200:
            raise PolicyError(f"enforcement.replies.{key}: must be one line of text without '%', "
                              f"at most 200 characters")
    if not service_name:
        raise PolicyError("enforcement.replies.service_name: must not be empty")
    types = section.get("enforced_connector_types", ["OnPremises"])
    if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
        raise PolicyError("enforcement.enforced_connector_types: must be a list of connector type names")
    pauses = _table(document, "pauses", required=False)
    _only(pauses, "pauses", {"days_per_year", "max_days_per_request"})
    pause_policy = PausePolicy(
        days_per_year=_int(pauses, "days_per_year", "pauses", 0, 366, default=90),
        max_days_per_request=_int(pauses, "max_days_per_request", "pauses", 1, 366, default=90),
    )
    return EnforcementPolicy(
        stages=tuple(stages),
        upcoming_lead_days=_int(section, "upcoming_lead_days", "enforcement", 0, 365, default=7),
        enforced_connector_types=frozenset(types),
        service_name=service_name,
        help_url=help_url,
        pauses=pause_policy,
        shadow=shadow_policy_from_mapping(document.get("shadow", {})),
    )


def shadow_policy_from_mapping(section: Any) -> ShadowPolicy:
    """The ``[shadow]`` table: ``default`` (boolean) and ``[shadow.tenants]`` (tenant id = boolean)."""
    if not isinstance(section, dict):
        raise PolicyError(f"shadow: must be a table ([shadow] with default = true | false and [shadow.tenants]), "
                          f"got {section!r}")
    _only(section, "shadow", {"default", "tenants"})
    default = section.get("default", False)
    if not isinstance(default, bool):
        raise PolicyError(f"shadow.default: must be true or false, got {default!r}")
    tenants = section.get("tenants", {})
    if not isinstance(tenants, dict):
        raise PolicyError("shadow.tenants: must be a table of tenant id = true | false")
    if len(tenants) > MAX_SHADOW_TENANTS:
        raise PolicyError(f"shadow.tenants: at most {MAX_SHADOW_TENANTS} tenants, got {len(tenants)}")
    for tenant, value in tenants.items():
        if not TENANT_ID.match(tenant):
            raise PolicyError(f"shadow.tenants: {tenant[:80]!r} is not a tenant id (1-64 characters A-Z a-z "
                              f"0-9 . _ -, starting with a letter or digit)")
        if not isinstance(value, bool):
            raise PolicyError(f"shadow.tenants.{tenant}: must be true or false, got {value!r}")
    return ShadowPolicy(default=default, shadowed=frozenset(t for t, on in tenants.items() if on),
                        enforced=frozenset(t for t, on in tenants.items() if not on))


def _table(document: Mapping[str, Any], name: str, required: bool = True) -> dict[str, Any]:
    value = document.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"{name}: the policy file needs a [{name}] table")
    return value


def _only(table: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _int(table: Mapping[str, Any], key: str, where: str, low: int, high: int, default: int | None = None) -> int:
    value = table.get(key, default)
    if value is None:
        raise PolicyError(f"{where}.{key}: required")
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise PolicyError(f"{where}.{key}: must be an integer {low}..{high}, got {value!r}")
    return value


@lru_cache(maxsize=4096)  # an evaluation asks for a few; the servers detected on one day share them
def _midnight_after(day: date, days: int) -> datetime:
    """Midnight UTC ``days`` after ``day``; the last representable day if that lies beyond it."""
    try:
        later = day + timedelta(days=days)
    except OverflowError:
        later = date.max
    return datetime.combine(later, time(0), tzinfo=UTC)
