"""What a simulation finds: per server its products, detection, stage changes, pauses and message
counts per day; the input's totals and the records skipped, each with its reason.

Memory grows with the number of servers and days, never with the number of records: each record
only increments counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

#: the three answers an edge gives a message, as counted
ANSWERS = ("accepted", "deferred", "rejected")
ACTION_ANSWER = {"accept": 0, "throttle": 1, "block": 2}  # edge decision action -> index in ANSWERS


def answer_of(action: str, shadow_reply: str | None) -> int:
    """The answer counted for an edge decision: in shadow mode the reply the edge withholds (the edge
    accepts and counts it), so a prediction says what enforcing would do for shadowed tenants too."""
    if shadow_reply is None:
        return ACTION_ANSWER[action]
    return 1 if shadow_reply.startswith("4") else 2

#: at most this many products/versions are listed per server, and skipped records listed
PRODUCTS_LISTED = 16
SKIPS_LISTED = 100


@dataclass(frozen=True, slots=True)
class StageChange:
    """A verdict that changed the stage or the minutes per hour, from the moment it took effect."""

    at: datetime
    stage: int
    throttle_minutes: int
    block_minutes: int


@dataclass(slots=True)
class PauseSpan:
    """A tenant pause that suspended this server's enforcement: from the verdict naming it to its end."""

    start: datetime
    until: datetime


@dataclass(slots=True)
class ServerResult:
    tenant_id: str
    server: str
    products: dict[tuple[str, str], None] = field(default_factory=dict)  # (product id, version), first seen first
    first_detected: datetime | None = None
    stages: list[StageChange] = field(default_factory=list)
    pauses: list[PauseSpan] = field(default_factory=list)
    days: dict[str, list[int]] = field(default_factory=dict)  # YYYY-MM-DD -> [accepted, deferred, rejected]
    shadow: bool = False  # its last verdict was in shadow mode: the edge accepts and counts instead

    @property
    def server_key(self) -> str:
        return f"{self.tenant_id}/{self.server}"

    def totals(self) -> list[int]:
        totals = [0, 0, 0]
        for counts in self.days.values():
            for index in range(3):
                totals[index] += counts[index]
        return totals

    def count(self, day: str, answer: int) -> None:
        self.counts_of(day)[answer] += 1

    def counts_of(self, day: str) -> list[int]:
        """The day's ``[accepted, deferred, rejected]``, to be counted in."""
        counts = self.days.get(day)
        if counts is None:
            counts = self.days[day] = [0, 0, 0]
        return counts

    def seen(self, product: str | None, version: str | None) -> None:
        if version and len(self.products) < PRODUCTS_LISTED:
            self.products.setdefault((product or "", version), None)

    def verdict(self, *, at: datetime, stage: int, throttle: int, block: int, paused_until: datetime | None,
                shadow: bool = False) -> None:
        """Note one verdict the edge follows from ``at`` on."""
        self.shadow = shadow
        if stage >= 1 and self.first_detected is None:
            self.first_detected = at
        last = self.stages[-1] if self.stages else None
        if last is None or (last.stage, last.throttle_minutes, last.block_minutes) != (stage, throttle, block):
            self.stages.append(StageChange(at, stage, throttle, block))
        if paused_until is not None and paused_until > at:
            if self.pauses and self.pauses[-1].until >= at:
                self.pauses[-1].until = paused_until  # the same pause, extended (or told again)
            else:
                self.pauses.append(PauseSpan(at, paused_until))
        elif self.pauses and self.pauses[-1].until > at:
            self.pauses[-1].until = at  # ended early


@dataclass(slots=True)
class Skip:
    where: str  # "FILE:LINE", "FILE:LINE record 3", "topic/partition@offset"
    reason: str


@dataclass(slots=True)
class Prediction:
    """Everything ``patchgate whatif`` prints."""

    enforce_from: datetime | None = None
    servers: dict[str, ServerResult] = field(default_factory=dict)
    records: int = 0  # simulated
    before_enforce_from: int = 0  # read but earlier than --enforce-from: not simulated
    first_at: datetime | None = None
    last_at: datetime | None = None
    skips: list[Skip] = field(default_factory=list)  # the first SKIPS_LISTED
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    commands: int = 0

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_reason.values())

    def skip(self, where: str, reason: str) -> None:
        kind = reason.split(":", 1)[0]
        self.skipped_by_reason[kind] = self.skipped_by_reason.get(kind, 0) + 1
        if len(self.skips) < SKIPS_LISTED:
            self.skips.append(Skip(where, reason))

    def server(self, server_key: str) -> ServerResult:
        result = self.servers.get(server_key)
        if result is None:
            tenant, _, server = server_key.partition("/")
            result = self.servers[server_key] = ServerResult(tenant, server)
        return result

    def sorted_servers(self) -> list[ServerResult]:
        return [self.servers[key] for key in sorted(self.servers)]
