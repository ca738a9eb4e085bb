"""The edge's inlined window decision and the report's reply agree with the one window rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from edge.verdicts import compile_verdict
from processors.events.verdict import (
    ACCEPT,
    BLOCK,
    THROTTLE,
    join_verdict,
    verdict_parts,
    window_action,
    window_position,
)
from processors.report.model import reply_now

HOUR = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def verdict(block: int, throttle: int, offset: int) -> bytes:
    parts = verdict_parts(
        server_key="contoso/ex01.contoso.local", tenant_id="contoso", server="ex01.contoso.local",
        issued_at=HOUR - timedelta(days=1), effective_at=HOUR - timedelta(days=1), valid_until=None, stage=3,
        throttle_minutes=throttle, block_minutes=block, window_offset=offset,
        throttle_reply="450 4.7.230 throttled", block_reply="550 5.7.230 blocked", paused_until=None,
        product=None, build=None, status="behind", rule="baseline", recommended_builds=[], client_ips=[])
    return join_verdict(parts, 1)


def test_the_rule_in_words() -> None:
    assert [window_action(m, 2, 3) for m in range(7)] == [BLOCK, BLOCK, THROTTLE, THROTTLE, THROTTLE, ACCEPT, ACCEPT]
    assert window_position(5, 10) == 55 and window_position(10, 10) == 0


@pytest.mark.parametrize(("block", "throttle", "offset"), [(0, 10, 37), (5, 30, 0), (60, 0, 59), (15, 45, 20)])
def test_edge_and_report_follow_the_rule_every_minute(block: int, throttle: int, offset: int) -> None:
    data = verdict(block, throttle, offset)
    compiled = compile_verdict(orjson.loads(data))
    for minute in range(60):
        now = HOUR + timedelta(minutes=minute, seconds=30)
        expected = window_action(window_position(minute, offset), block, throttle)
        assert compiled.decide(now.timestamp()).action == expected, minute
        assert reply_now(orjson.loads(data), now).action == expected, minute
