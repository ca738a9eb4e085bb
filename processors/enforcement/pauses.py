"""Tenant enforcement pauses: a tenant suspends throttling and blocking of all its servers for N days.

A pause is created or extended by N days, can be ended early, and draws on a yearly quota of days.

Rules (our defaults, documented in policy.toml):
- A tenant has at most one pause; creating one while another runs extends it.
- Days are charged to the calendar year (UTC) of the command's ``issued_at``; at most
  ``days_per_year`` per year. A request that would exceed the quota is refused whole, with a message
  saying how many days are left.
- Ending early gives back the unused whole days (rounded down) to the year they were charged to.
- A pause never stops the stage clock: it only suspends throttling and blocking.

``apply_pause_command`` is pure: the worker stores its result atomically (see ``processors.worker``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from processors.enforcement.policy import PausePolicy


@dataclass(frozen=True, slots=True)
class PauseState:
    """One tenant's pause: the running pause (if any) and the days used per year."""

    until: datetime | None = None
    started_at: datetime | None = None
    charged_year: int | None = None
    used: tuple[tuple[int, int], ...] = ()  # (year, days used)

    def used_in(self, year: int) -> int:
        return dict(self.used).get(year, 0)

    def active_at(self, at: datetime) -> bool:
        """True while a pause runs at ``at``. A pause does not reach back before its start, so a
        late or redelivered event from before the pause is judged as it was at its own time."""
        if self.until is None or at >= self.until:
            return False
        return self.started_at is None or self.started_at <= at

    def with_used(self, year: int, days: int) -> PauseState:
        table = dict(self.used)
        table[year] = days
        return replace(self, used=tuple(sorted(table.items())))


@dataclass(frozen=True, slots=True)
class PauseOutcome:
    kind: str  # pause_started | pause_extended | pause_ended | pause_refused
    state: PauseState
    text: str
    days_left: int


def apply_pause_command(state: PauseState, action: str, days: int | None, at: datetime,
                        policy: PausePolicy) -> PauseOutcome:
    year = at.year
    left = policy.days_per_year - state.used_in(year)
    if action in ("pause_create", "pause_extend"):
        if days is None or days < 1 or days > policy.max_days_per_request:
            return PauseOutcome("pause_refused", state,
                                f"A pause needs 1 to {policy.max_days_per_request} days, not {days}.", left)
        if days > left:
            return PauseOutcome(
                "pause_refused", state,
                f"Pausing for {days} days would exceed the quota of {policy.days_per_year} days in {year}: "
                f"{left} days are left this year.", left)
        running = state.active_at(at)
        base = state.until if running and state.until is not None else at
        new_state = replace(
            state.with_used(year, state.used_in(year) + days),
            until=base + timedelta(days=days),
            started_at=state.started_at if running else at,
            charged_year=year,
        )
        kind = "pause_extended" if running else "pause_started"
        assert new_state.until is not None
        return PauseOutcome(kind, new_state,
                            f"Enforcement is paused until {new_state.until:%Y-%m-%d %H:%M} UTC; "
                            f"{left - days} pause days are left in {year}.", left - days)
    if action == "pause_end":
        if not state.active_at(at) or state.until is None:
            return PauseOutcome("pause_refused", state, "There is no running pause to end.", left)
        unused = (state.until - at).days
        charged = state.charged_year if state.charged_year is not None else year
        new_state = replace(state.with_used(charged, max(0, state.used_in(charged) - unused)), until=at)
        left_now = policy.days_per_year - new_state.used_in(year)
        return PauseOutcome("pause_ended", new_state,
                            f"The pause was ended early; {unused} unused days were returned "
                            f"and {left_now} pause days are left in {year}.", left_now)
    return PauseOutcome("pause_refused", state, f"Unknown pause action {action!r}.", left)
