"""Shadow mode at the edge: a verdict saying ``"shadow": true`` accepts, and the reply it withheld is
counted by code and logged within bounds; a malformed flag fails open; the milter and the policy
service both count; the counters reach ``/metrics``."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from edge.config import Connector, config_from_connectors
from edge.milter.codec import SMFIR_ACCEPT
from edge.milter.driver import MilterDriver
from edge.milter.server import MilterServer
from edge.policy.server import PolicyService
from edge.prometheus import EdgeCollector
from edge.shadow import ShadowReplies
from edge.verdicts import ACCEPT, BLOCK, THROTTLE, Decision, VerdictIndex, compile_verdict
from tests.edge.helpers import BLOCK as BLOCK_TEXT
from tests.edge.helpers import T0, exchange_headers, verdict
from tests.edge.test_milter_server import make_app, run

EX01 = "contoso/ex01.contoso.com"


def index(*records: dict[str, Any]) -> VerdictIndex:
    idx = VerdictIndex()
    for record in records:
        assert idx.apply_raw(record["server_key"].encode(), orjson.dumps(record))
    idx.caught_up = True
    return idx


@pytest.mark.parametrize(("throttle", "block", "minute", "code"), [(60, 0, 5, "450"), (0, 60, 5, "550"),
                                                                   (30, 10, 5, "550"), (30, 10, 20, "450")])
def test_a_shadowed_verdict_accepts_and_carries_the_reply_it_withheld(throttle: int, block: int, minute: int,
                                                                      code: str) -> None:
    enforced = index(verdict(EX01, throttle=throttle, block=block)).decide(EX01, T0 + minute * 60)
    shadowed = index(verdict(EX01, throttle=throttle, block=block, shadow=True)).decide(EX01, T0 + minute * 60)
    assert enforced.action == (BLOCK if code == "550" else THROTTLE) and enforced.shadow_reply is None
    assert (shadowed.action, shadowed.reply, shadowed.enforced) == (ACCEPT, None, False)
    assert shadowed.shadow_reply == enforced.reply and shadowed.shadow_reply is not None
    assert shadowed.shadow_reply.startswith(code) and shadowed.reason == "shadow-" + enforced.reason


def test_shadow_false_or_absent_enforces_and_outside_the_window_nothing_is_withheld() -> None:
    assert index(verdict(EX01, throttle=0, block=60, shadow=False)).decide(EX01, T0).action == BLOCK
    outside = index(verdict(EX01, throttle=10, shadow=True)).decide(EX01, T0 + 30 * 60)
    assert (outside.action, outside.shadow_reply, outside.reason) == (ACCEPT, None, "outside-window")


@pytest.mark.parametrize("value", ["yes", 1, None, "false", [True]])
def test_a_malformed_shadow_flag_is_counted_and_fails_open(value: Any) -> None:
    problems: list[str] = []
    compiled = compile_verdict(verdict(EX01, throttle=0, block=60, shadow=value), problems=problems)
    assert compiled.shadow is True
    assert compiled.decide(T0).action == ACCEPT
    assert len(problems) == 1 and problems[0].startswith("shadow: expected true or false")
    idx = index(verdict(EX01, throttle=0, block=60, shadow=value))
    assert idx.metrics.verdict_fields_skipped == 1 and idx.metrics.bad_records == 0


def test_switching_shadow_off_takes_effect_with_the_next_verdict() -> None:
    idx = index(verdict(EX01, throttle=0, block=60, shadow=True))
    assert idx.decide(EX01, T0).action == ACCEPT
    assert idx.apply_raw(EX01.encode(), orjson.dumps(verdict(EX01, sequence=2, throttle=0, block=60)))
    assert idx.decide(EX01, T0).reply == BLOCK_TEXT.format(n=60)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def decision(server_key: str, code: str = "550") -> Decision:
    return Decision(ACCEPT, None, "shadow-block-window", server_key, 7, f"{code} 5.7.230 would block")


def test_every_withheld_reply_is_counted_but_a_busy_server_logs_once_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    shadow = ShadowReplies(clock=clock)
    with caplog.at_level(logging.INFO, logger="edge.shadow"):
        for _ in range(1000):
            shadow.record(decision(EX01), client="192.0.2.10", queue_id="Q1")
        shadow.record(decision(EX01, "450"))
        clock.now = 61.0
        shadow.record(decision(EX01))
    assert shadow.replies == {"450": 1, "550": 1001}
    assert (shadow.log_lines, shadow.log_suppressed) == (2, 1000)
    first, second = (r for r in caplog.records if r.name == "edge.shadow")
    assert first.getMessage() == ("shadow mode: accepted instead of replying '550 5.7.230 would block' (tenant "
                                  "contoso, server ex01.contoso.com, client 192.0.2.10, queue Q1, verdict seq 7)")
    assert (first.__dict__["tenant"], first.__dict__["server"]) == ("contoso", "ex01.contoso.com")
    assert second.getMessage().endswith("; 1000 more from this server since its last line)")


def test_many_servers_log_at_most_max_lines_a_minute_and_are_remembered_within_a_bound() -> None:
    clock = Clock()
    shadow = ShadowReplies(clock=clock, max_lines=5, max_servers=3)
    for n in range(20):
        shadow.record(decision(f"contoso/ex{n:02d}.contoso.com"))
    assert (shadow.log_lines, shadow.log_suppressed, shadow.replies["550"]) == (5, 15, 20)
    assert len(shadow._servers) == 3  # the least recently logged were forgotten
    clock.now = 60.0
    shadow.record(decision("contoso/ex19.contoso.com"))
    assert shadow.log_lines == 6  # a new minute: lines again


def test_a_decision_without_a_withheld_reply_is_not_counted() -> None:
    shadow = ShadowReplies()
    shadow.record(Decision(ACCEPT, None, "outside-window", EX01, 1))
    assert shadow.replies == {"450": 0, "550": 0} and shadow.log_lines == 0


def test_the_milter_accepts_a_shadowed_block_and_counts_550(tmp_path: Path) -> None:
    app, _ = make_app(verdict(EX01, stage=8, throttle=0, block=60, shadow=True))

    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        assert await d.message(headers=exchange_headers("EX01.contoso.com"), queue_id="Q1") == (SMFIR_ACCEPT, b"")
        await d.quit()
    run(app, body, tmp_path)
    assert (app.metrics.accepted, app.metrics.blocked) == (1, 0)
    assert app.cache.shadow.replies == {"450": 0, "550": 1}


def test_the_policy_service_answers_dunno_for_a_shadowed_throttle_and_counts_450() -> None:
    idx = index(verdict(EX01, throttle=60, shadow=True), verdict("contoso/ex02.contoso.com", throttle=60))
    config = config_from_connectors([Connector("onprem", "contoso", "OnPremises",
                                               (ipaddress.ip_network("192.0.2.0/25"),))])
    service = PolicyService(config, idx, clock=lambda: T0 + 120)
    request = {"request": "smtpd_access_policy", "client_address": "192.0.2.10", "helo_name": "ex01.contoso.com"}
    assert service.respond(request) == "DUNNO"
    assert service.respond({**request, "helo_name": "ex02.contoso.com"}).startswith("450 4.7.230 ")
    assert (service.metrics.accepted, service.metrics.throttled) == (1, 1)
    assert idx.shadow.replies == {"450": 1, "550": 0}


def test_the_shadow_counters_are_exported_by_code() -> None:
    idx = index(verdict(EX01, throttle=0, block=60, shadow=True))
    idx.shadow.record(idx.decide(EX01, T0))
    registry = CollectorRegistry()
    registry.register(EdgeCollector(idx, {}, topic="patchgate.verdicts"))
    text = generate_latest(registry).decode()
    assert 'patchgate_edge_shadow_replies_total{code="550"} 1.0' in text
    assert 'patchgate_edge_shadow_replies_total{code="450"} 0.0' in text
    assert "patchgate_edge_shadow_log_suppressed_total 0.0" in text


def test_decide_on_a_shadowed_verdict_allocates_no_decision() -> None:
    idx = index(verdict(EX01, throttle=0, block=60, shadow=True))
    assert idx.decide(EX01, T0) is idx.decide(EX01, T0 + 60)  # the precompiled acceptance, shared
