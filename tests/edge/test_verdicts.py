"""decide(): window semantics, pauses, validity, stale sequences, tombstones, bad records."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.verdicts import (
    ACCEPT,
    BLOCK,
    THROTTLE,
    BadVerdict,
    VerdictIndex,
    compile_verdict,
)
from tests.edge.helpers import BLOCK as BLOCK_TEXT
from tests.edge.helpers import T0, verdict, verdict_bytes

KEY = "contoso/ex01.contoso.com"


def index(*records: dict, caught_up: bool = True) -> VerdictIndex:
    idx = VerdictIndex()
    for r in records:
        assert idx.apply_raw(r["server_key"].encode(), orjson.dumps(r))
    idx.caught_up = caught_up
    return idx


def at_minute(minute: int, second: int = 0) -> float:
    return T0 + minute * 60 + second


def test_throttle_window_from_offset() -> None:
    idx = index(verdict(throttle=5, offset=10))
    actions = [idx.decide(KEY, at_minute(m)).action for m in range(60)]
    assert [m for m, a in enumerate(actions) if a == THROTTLE] == [10, 11, 12, 13, 14]
    assert actions.count(ACCEPT) == 55
    d = idx.decide(KEY, at_minute(10, 59))
    assert d.reply is not None and d.reply.startswith("450 4.7.230 ")
    assert "throttled for 5 mins/hr" in d.reply


def test_block_minutes_come_first_then_throttle() -> None:
    idx = index(verdict(stage=5, throttle=30, block=5, offset=0))
    actions = [idx.decide(KEY, at_minute(m)).action for m in range(60)]
    assert actions[:5] == [BLOCK] * 5
    assert actions[5:35] == [THROTTLE] * 30
    assert actions[35:] == [ACCEPT] * 25
    assert idx.decide(KEY, at_minute(0)).reply == BLOCK_TEXT.format(n=5)


def test_window_wraps_around_the_hour() -> None:
    idx = index(verdict(stage=3, throttle=10, offset=55))
    throttled = [m for m in range(60) if idx.decide(KEY, at_minute(m)).action == THROTTLE]
    assert throttled == [0, 1, 2, 3, 4, 55, 56, 57, 58, 59]


def test_stage_8_blocks_all_hour() -> None:
    idx = index(verdict(stage=8, throttle=0, block=60, offset=37))
    assert {idx.decide(KEY, at_minute(m, 30)).action for m in range(60)} == {BLOCK}


def test_unknown_key_accepts() -> None:
    idx = index(verdict())
    d = idx.decide("contoso/ex99.contoso.com", at_minute(0))
    assert d.action == ACCEPT and d.reason == "no-verdict"
    assert idx.metrics.decisions_no_verdict == 1


def test_pause_in_future_accepts_and_ends() -> None:
    idx = index(verdict(throttle=60, paused_until=at_minute(30)))
    assert idx.decide(KEY, at_minute(29, 59)).reason == "paused"
    assert idx.decide(KEY, at_minute(30)).action == THROTTLE


def test_not_yet_effective_keeps_previous_verdict() -> None:
    idx = index(verdict(sequence=1, throttle=60))
    later = verdict(sequence=2, stage=8, throttle=0, block=60, effective_at=at_minute(20))
    idx.apply_raw(KEY.encode(), orjson.dumps(later))
    assert idx.decide(KEY, at_minute(19)).action == THROTTLE
    assert idx.decide(KEY, at_minute(20)).action == BLOCK


def test_first_verdict_not_yet_effective_accepts() -> None:
    idx = index(verdict(throttle=60, effective_at=at_minute(20)))
    assert idx.decide(KEY, at_minute(5)).reason == "not-yet-effective"


def test_expired_verdict_accepts() -> None:
    idx = index(verdict(throttle=60, valid_until=at_minute(10)))
    assert idx.decide(KEY, at_minute(9)).action == THROTTLE
    assert idx.decide(KEY, at_minute(10)).reason == "expired"


def test_fail_open_until_caught_up() -> None:
    idx = index(verdict(throttle=60), caught_up=False)
    d = idx.decide(KEY, at_minute(1))
    assert d.action == ACCEPT and d.reason == "fail-open-not-caught-up"
    assert idx.metrics.decisions_fail_open == 1
    idx.caught_up = True
    assert idx.decide(KEY, at_minute(1)).action == THROTTLE


def test_stale_sequence_ignored_newer_applied() -> None:
    idx = index(verdict(sequence=5, throttle=60))
    assert not idx.apply_raw(KEY.encode(), verdict_bytes(sequence=4, stage=8, throttle=0, block=60))
    assert not idx.apply_raw(KEY.encode(), verdict_bytes(sequence=5, stage=8, throttle=0, block=60))
    assert idx.metrics.verdicts_stale_ignored == 2
    assert idx.decide(KEY, at_minute(1)).action == THROTTLE
    assert idx.apply_raw(KEY.encode(), verdict_bytes(sequence=6, stage=0, throttle=0, block=0))
    assert idx.decide(KEY, at_minute(1)).action == ACCEPT


def test_tombstone_removes() -> None:
    idx = index(verdict(throttle=60, client_ips=["192.0.2.10"]))
    assert idx.server_key_for_ip("192.0.2.10") == KEY
    assert idx.apply_raw(KEY.encode(), None)
    assert idx.decide(KEY, at_minute(1)).reason == "no-verdict"
    assert idx.server_key_for_ip("192.0.2.10") is None
    assert idx.metrics.tombstones_applied == 1


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        (b"k/x", b"{not json", "not JSON"),
        (b"k/x", b"[1,2]", "expected a JSON object"),
        (KEY.encode(), orjson.dumps(verdict(schema="other/1")), "schema"),
        (b"other/key", verdict_bytes(), "differs from the record key"),
        (KEY.encode(), orjson.dumps({**verdict(), "sequence": "7"}), "sequence"),
        (KEY.encode(), orjson.dumps({**verdict(), "effective_at": "yesterday"}), "effective_at"),
        (KEY.encode(), orjson.dumps({**verdict(), "effective_at": "2026-11-28T10:00:00"}), "UTC offset"),
        (KEY.encode(), orjson.dumps(verdict(replies={"throttle": "250 ok", "block": "550 5.7.230 x"})),
         "replies.throttle"),
        (KEY.encode(), orjson.dumps(verdict(replies={"throttle": "450 4.7.230 a\r\nb", "block": "550 5.7.230 x"})),
         "replies.throttle"),
        (b"\xff\xfe", verdict_bytes(), "UTF-8"),
        (None, None, "tombstone without a key"),
    ],
)
def test_bad_records_counted_not_raised(key: bytes | None, value: bytes | None, why: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    idx = index(verdict(throttle=60))
    assert not idx.apply_raw(key, value)
    assert idx.metrics.bad_records == 1
    assert why in caplog.text
    assert idx.decide(KEY, at_minute(1)).action == THROTTLE  # the good verdict is untouched


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"client_ips": ["10.0.0.300"]}, "client_ips: not an IP address: '10.0.0.300'"),
        ({"client_ips": ["not-an-ip", 7]}, "client_ips: not an IP address: 'not-an-ip'"),
        ({"client_ips": "192.0.2.10"}, "client_ips: expected a list"),
        ({"window_offset": 60}, "window_offset: 60 outside 0..59"),
        ({"valid_until": "someday"}, "valid_until: not an RFC 3339 timestamp"),
        ({"paused_until": 5}, "paused_until: expected an RFC 3339 string"),
    ],
)
def test_a_bad_optional_field_is_skipped_and_the_verdict_still_enforces(
        changes: dict[str, Any], why: str, caplog: pytest.LogCaptureFixture) -> None:
    """One unvalidated field (e.g. a client IP in MTA notation) must not turn enforcement off."""
    bad = {**verdict(sequence=2, throttle=0, block=60), **changes}
    idx = index(verdict(throttle=60))
    assert idx.apply_raw(KEY.encode(), orjson.dumps(bad))
    assert idx.metrics.bad_records == 0 and idx.metrics.verdict_fields_skipped >= 1
    assert why in caplog.text
    assert idx.decide(KEY, at_minute(1)).action == BLOCK  # the new verdict, enforced for its server key


def test_verdict_client_ips_are_normalised_and_good_ones_kept() -> None:
    idx = index(verdict(client_ips=["[10.0.0.5]", "::ffff:192.0.2.10", "IPv6:2001:DB8::5", "10.0.0.300"]))
    assert idx.server_key_for_ip("10.0.0.5") == KEY  # the MTA's bracket notation, normalised
    assert idx.server_key_for_ip("192.0.2.10") == KEY
    assert idx.server_key_for_ip("2001:db8::5") == KEY
    assert idx.metrics.verdict_fields_skipped == 1


def test_compile_rejects_enforcement_without_reply() -> None:
    with pytest.raises(BadVerdict, match=r"replies\.block: missing"):
        compile_verdict(verdict(block=5, replies={"throttle": "450 4.7.230 x"}))


def test_learned_ip_hints_are_bounded() -> None:
    idx = VerdictIndex(max_learned_ips=3)
    for i in range(5):
        idx.learn_ip(f"192.0.2.{i}", f"t/s{i}")
    assert idx.server_key_for_ip("192.0.2.0") is None
    assert idx.server_key_for_ip("192.0.2.4") == "t/s4"
    # A verdict's client_ips win over a locally learned hint.
    idx.apply_raw(b"t/v", verdict_bytes(server_key="t/v", client_ips=["192.0.2.4"]))
    assert idx.server_key_for_ip("192.0.2.4") == "t/v"


def test_decide_counts_by_action() -> None:
    idx = index(verdict(stage=5, throttle=30, block=5))
    for m in range(60):
        idx.decide(KEY, at_minute(m))
    assert (idx.metrics.decisions_block, idx.metrics.decisions_throttle, idx.metrics.decisions_accept) \
        == (5, 30, 25)


@given(offset=st.integers(0, 59), block=st.integers(0, 60), throttle=st.integers(0, 60),
       t=st.floats(0, 4_000_000_000, allow_nan=False))
def test_window_matches_reference_formula(offset: int, block: int, throttle: int, t: float) -> None:
    idx = index(verdict(stage=5, throttle=throttle, block=block, offset=offset, effective_at=0))
    minute = int(t // 60) % 60  # the UTC minute of the hour
    m = (minute - offset) % 60
    expected = BLOCK if m < block else THROTTLE if m < block + throttle else ACCEPT
    assert idx.decide(KEY, t).action == expected
