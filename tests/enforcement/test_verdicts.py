"""Verdicts and notifications computed from a server's state at one instant."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import orjson

from processors.contracts import contracts
from processors.enforcement.pauses import PauseState
from processors.enforcement.policy import load_enforcement_policy
from processors.enforcement.verdicts import Evaluation, ServerState, evaluate, window_offset

POLICY = load_enforcement_policy()
DETECTED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
STATE = ServerState(
    server_key="contoso/ex01.contoso.com", tenant_id="contoso", server="ex01.contoso.com",
    status="behind", rule="baseline", product="Exchange Server 2019", build="15.2.1544.4",
    recommended=({"short": "15.2.1544.36", "long": "15.02.1544.036", "name": "Exchange Server 2019 CU14 Oct25SU"},),
    detected_at=DETECTED, connector_type="OnPremises", client_ips=("203.0.113.10",),
)


def verdict(evaluation: Evaluation, sequence: int = 1) -> dict[str, object]:
    assert evaluation.verdict_prefix is not None and evaluation.verdict_suffix is not None
    document = orjson.loads(evaluation.verdict_prefix + str(sequence).encode() + evaluation.verdict_suffix)
    contracts.verdict(document)
    return document  # type: ignore[no-any-return]


def test_first_detection_gives_stage_one_and_a_detected_notice() -> None:
    result = evaluate(STATE, POLICY, PauseState(), DETECTED)
    body = verdict(result)
    assert body["stage"] == 1 and body["throttle_minutes"] == 0 and body["block_minutes"] == 0
    assert body["valid_until"] == "2026-03-31T00:00:00Z"
    assert [n["kind"] for n in result.notifications] == ["detected"]
    contracts.notification(result.notifications[0])
    assert "15.2.1544.36" in result.notifications[0]["text"]
    assert result.next_due == datetime(2026, 3, 24, tzinfo=UTC)  # the stage_upcoming notice


def test_stage_change_and_upcoming_notice() -> None:
    committed = replace(STATE, stage=1, issued_at=DETECTED)
    week_before = evaluate(committed, POLICY, PauseState(), datetime(2026, 3, 25, tzinfo=UTC))
    assert week_before.stage == 1 and [n["kind"] for n in week_before.once_notifications] == ["stage_upcoming"]
    assert week_before.fingerprint == evaluate(committed, POLICY, PauseState(), DETECTED).fingerprint
    throttled = evaluate(committed, POLICY, PauseState(), datetime(2026, 3, 31, 0, 0, tzinfo=UTC))
    body = verdict(throttled, 2)
    assert body["stage"] == 2 and body["throttle_minutes"] == 5
    assert body["replies"]["throttle"].startswith("450 4.7.230 ")  # type: ignore[index]
    assert [n["kind"] for n in throttled.notifications] == ["stage_started"]


def test_pause_sets_paused_until_without_stopping_the_clock() -> None:
    committed = replace(STATE, stage=2, issued_at=DETECTED)
    pause = PauseState(until=datetime(2026, 5, 1, tzinfo=UTC), started_at=datetime(2026, 4, 1, tzinfo=UTC))
    result = evaluate(committed, POLICY, pause, datetime(2026, 4, 15, tzinfo=UTC))
    body = verdict(result)
    assert body["paused_until"] == "2026-05-01T00:00:00Z"
    assert body["stage"] == 3 and body["throttle_minutes"] == 10  # day 45: the clock kept running
    assert result.next_due == datetime(2026, 4, 20, tzinfo=UTC)  # stage 4 comes before the pause ends


def test_remediation_publishes_stage_zero_once() -> None:
    enforced = replace(STATE, stage=3, issued_at=DETECTED, has_verdict=True)
    patched = replace(enforced, status="current", rule="latest_su", detected_at=None, build="15.2.1544.36")
    result = evaluate(patched, POLICY, PauseState(), datetime(2026, 4, 20, tzinfo=UTC))
    assert verdict(result)["stage"] == 0
    assert [n["kind"] for n in result.notifications] == ["remediated"]
    never_enforced = replace(patched, stage=0)
    assert evaluate(never_enforced, POLICY, PauseState(), datetime(2026, 4, 20, tzinfo=UTC)).fingerprint is None


def test_hidden_version_and_relays_never_start_enforcement() -> None:
    for status in ("no_build", "not_exchange", "cloud", "unknown_build"):
        result = evaluate(replace(STATE, status=status), POLICY, PauseState(), DETECTED)
        assert result.fingerprint is None


def test_out_of_scope_connector_is_reported_not_enforced() -> None:
    result = evaluate(replace(STATE, connector_type="Partner"), POLICY, PauseState(), DETECTED)
    assert result.fingerprint is None


def test_a_late_event_never_moves_the_stage_backwards() -> None:
    committed = replace(STATE, stage=3, issued_at=datetime(2026, 4, 12, tzinfo=UTC))
    late = evaluate(committed, POLICY, PauseState(), datetime(2026, 3, 2, tzinfo=UTC))
    assert late.stage == 3


def test_window_offset_is_stable_and_in_range() -> None:
    offsets = {window_offset(f"t/ex{i}.example") for i in range(500)}
    assert offsets <= set(range(60)) and len(offsets) > 40
    assert window_offset("contoso/ex01.contoso.com") == window_offset("contoso/ex01.contoso.com")


def test_an_evaluation_that_comes_to_the_verdict_in_force_builds_none_but_keeps_its_notices_and_clock() -> None:
    """The worker evaluates every server a batch touches; most come to the verdict already
    committed. Such an evaluation builds no verdict (nor its notifications), as the commit would
    send none, and still carries the notices due without one and the time of its next due work."""
    first = evaluate(STATE, POLICY, PauseState(), DETECTED)
    committed = replace(STATE, stage=1, issued_at=DETECTED, fingerprint=first.fingerprint)
    week_before = evaluate(committed, POLICY, PauseState(), datetime(2026, 3, 25, tzinfo=UTC))
    assert week_before.fingerprint == first.fingerprint
    assert week_before.verdict_prefix is None and week_before.verdict_suffix is None
    assert week_before.notifications == () and week_before.action == "report"
    assert [n["kind"] for n in week_before.once_notifications] == ["stage_upcoming"]
    assert week_before.next_due == datetime(2026, 3, 31, tzinfo=UTC)
    throttled = evaluate(committed, POLICY, PauseState(), datetime(2026, 3, 31, tzinfo=UTC))
    assert verdict(throttled, 2)["stage"] == 2  # another fingerprint: a verdict again
    assert [n["kind"] for n in throttled.notifications] == ["stage_started"]
