"""Pause quota arithmetic: create, extend, end early, refuse over quota."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.enforcement.pauses import PauseState, apply_pause_command
from processors.enforcement.policy import PausePolicy

POLICY = PausePolicy(days_per_year=90, max_days_per_request=90)
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_twenty_plus_thirty_then_sixty_is_refused_with_days_left() -> None:
    first = apply_pause_command(PauseState(), "pause_create", 20, T0, POLICY)
    assert first.kind == "pause_started" and first.state.until == T0 + timedelta(days=20)
    later = T0 + timedelta(days=40)
    second = apply_pause_command(first.state, "pause_create", 30, later, POLICY)
    assert second.kind == "pause_started" and second.state.until == later + timedelta(days=30)
    assert second.state.used_in(2026) == 50 and second.days_left == 40
    refused = apply_pause_command(second.state, "pause_create", 60, later + timedelta(days=40), POLICY)
    assert refused.kind == "pause_refused"
    assert refused.state == second.state
    assert "40 days are left this year" in refused.text


def test_create_while_running_extends_from_the_current_end() -> None:
    first = apply_pause_command(PauseState(), "pause_create", 10, T0, POLICY)
    extended = apply_pause_command(first.state, "pause_extend", 5, T0 + timedelta(days=2), POLICY)
    assert extended.kind == "pause_extended"
    assert extended.state.until == T0 + timedelta(days=15)
    assert extended.state.started_at == T0


def test_ending_early_returns_the_unused_whole_days() -> None:
    first = apply_pause_command(PauseState(), "pause_create", 30, T0, POLICY)
    ended = apply_pause_command(first.state, "pause_end", None, T0 + timedelta(days=10, hours=3), POLICY)
    assert ended.kind == "pause_ended"
    assert ended.state.until == T0 + timedelta(days=10, hours=3)
    assert ended.state.used_in(2026) == 11  # 19 whole unused days back
    assert not ended.state.active_at(T0 + timedelta(days=11))


def test_quota_is_per_calendar_year() -> None:
    used = PauseState(used=((2026, 90),))
    assert apply_pause_command(used, "pause_create", 1, T0, POLICY).kind == "pause_refused"
    next_year = apply_pause_command(used, "pause_create", 30, datetime(2027, 1, 2, tzinfo=UTC), POLICY)
    assert next_year.kind == "pause_started" and next_year.state.used_in(2027) == 30


def test_invalid_requests_are_refused_not_raised() -> None:
    assert apply_pause_command(PauseState(), "pause_create", 0, T0, POLICY).kind == "pause_refused"
    assert apply_pause_command(PauseState(), "pause_create", 91, T0, POLICY).kind == "pause_refused"
    assert apply_pause_command(PauseState(), "pause_end", None, T0, POLICY).kind == "pause_refused"


def test_a_pause_does_not_reach_back_before_its_start() -> None:
    started = apply_pause_command(PauseState(), "pause_create", 20, T0, POLICY).state
    assert not started.active_at(T0 - timedelta(hours=1))
    assert started.active_at(T0) and started.active_at(T0 + timedelta(days=19))
    assert not started.active_at(T0 + timedelta(days=20))
