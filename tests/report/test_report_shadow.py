"""The report's reading of a verdict's ``shadow`` flag matches the edge's: absent or false enforces,
true (and any malformed value) accepts and names the withheld reply."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from edge.verdicts import compile_verdict
from processors.report.model import reply_now
from tests.edge.helpers import verdict

NOW = datetime(2026, 11, 28, 10, 17, tzinfo=UTC)  # an hour after the helpers' verdicts took effect


@pytest.mark.parametrize("flag", [True, False, "yes", None, 1])
def test_the_report_and_the_edge_agree_on_the_shadow_flag(flag: Any) -> None:
    record = verdict(stage=8, throttle=0, block=60, shadow=flag)
    edge = compile_verdict(record, problems=[]).decide(NOW.timestamp())
    report = reply_now(record, NOW)
    assert (report.action, report.reply if report.action != "accept" else None) == (edge.action, edge.reply)
    assert report.withheld == edge.shadow_reply
    assert report.reason == edge.reason


def test_without_the_flag_the_reply_is_as_before() -> None:
    report = reply_now(verdict(stage=2, throttle=60), NOW)
    assert (report.action, report.reason, report.withheld) == ("throttle", "throttle-window", None)
