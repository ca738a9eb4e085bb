"""Report rows computed from server state in a real Redis, written as the worker writes it."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from processors.enforcement.pauses import PauseState
from processors.enforcement.policy import load_enforcement_policy
from processors.enforcement.verdicts import window_offset
from processors.report.cli import render_report
from processors.report.model import daily_totals, reply_now
from processors.report.reader import ReportReader
from processors.state.keys import KeySchema
from processors.state.store import StateStore
from tests.report.seed import SeedServer, seed_pause, seed_server

pytestmark = pytest.mark.integration

POLICY = load_enforcement_policy()
NOW = datetime(2026, 11, 28, 10, 17, 0, tzinfo=UTC)
THROTTLE_5 = ("450 4.7.230 Connecting Exchange server version is out-of-date; connection to patchgate "
              "throttled for 30 mins/hr.")
BLOCK_5 = ("550 5.7.230 Connecting Exchange server version is out-of-date; connection to patchgate "
           "blocked for 5 mins/hr.")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def day(offset: int) -> str:
    return (NOW.date() - timedelta(days=offset)).isoformat()


def at_window_minute(server_key: str, m: int, base: datetime = NOW) -> datetime:
    """The instant within ``base``'s hour at which the server's window position is ``m``."""
    minute = (window_offset(server_key) + m) % 60
    return base.replace(minute=minute, second=30)


async def _reader(redis_url: str, prefix: str) -> tuple[aioredis.Redis, KeySchema, ReportReader]:
    client = aioredis.Redis.from_url(redis_url)
    keys = KeySchema(prefix)
    return client, keys, ReportReader(StateStore(client, keys), POLICY)


def seeded_rows(redis_url: str, prefix: str, spec: SeedServer) -> Any:
    """The contoso report rows at NOW after seeding ``spec`` as the worker writes it."""
    async def scenario() -> Any:
        client, keys, reader = await _reader(redis_url, prefix)
        try:
            await seed_server(client, keys, POLICY, spec, NOW)
            return await reader.rows("contoso", NOW)
        finally:
            await client.aclose()
    return run(scenario())


def test_row_has_every_report_field(redis_url: str, unique_name: Callable[[str], str]) -> None:
    prefix = unique_name("pg")
    detected = datetime(2026, 10, 14, 15, 30, tzinfo=UTC)  # 45 days before NOW: stage 3 (10 min/hr)
    spec = SeedServer("contoso", "EX02.contoso.local", detected, ips=["203.0.113.25", "203.0.113.26"],
                      helos=["ex02.contoso.local"], messages={day(0): 60, day(1): 17, day(29): 3, day(30): 99})

    rows = seeded_rows(redis_url, prefix, spec)
    assert len(rows) == 1
    row = rows[0].to_json()
    assert row["ServerFQDN"] == "ex02.contoso.local"
    assert row["Build"] == "15.1.2507.39" and row["BuildLong"] == "15.01.2507.039"
    assert row["ExchangeServer"] == "Exchange Server 2016"
    assert row["FirstDetectedDate"] == "2026-10-14T15:30:00Z"
    assert row["RecommendedBuildVersions"] == [
        {"short": "15.1.2507.61", "long": "15.01.2507.061", "name": "Exchange Server 2016 CU23 Oct25SU"}]
    # stage starts are 00:00 UTC of detection date + start_day (30 throttle, 60 block)
    assert row["ThrottleEnabledDate"] == "2026-11-13T00:00:00Z"
    assert row["BlockingEnabledDate"] == "2026-12-13T00:00:00Z"
    assert row["stage"] == 3 and row["stage_due"] == 3
    assert (row["throttle_minutes"], row["block_minutes"]) == (10, 0)
    assert row["NextStage"] == 4
    assert (row["NextStageThrottleRate"], row["NextStageBlockRate"]) == (20, 0)
    assert row["NextStageStartDate"] == "2026-12-03T00:00:00Z"
    assert row["status"] == "behind" and row["rule"] == "baseline"
    assert row["client_ips"] == ["203.0.113.25", "203.0.113.26"]
    assert row["helos"] == ["ex02.contoso.local"]
    assert row["connector_type"] == "OnPremises"
    assert row["last_seen"] == "2026-11-28T10:12:00Z"
    per_day = row["messages_per_day"]
    assert len(per_day) == 30  # the last 30 days, today included; day 30 is outside
    assert per_day[-1] == {"date": "2026-11-28", "messages": 60}
    assert per_day[-2] == {"date": "2026-11-27", "messages": 17}
    assert per_day[0] == {"date": day(29), "messages": 3}
    assert sum(d["messages"] for d in per_day) == 80
    assert row["verdict_sequence"] == 1
    assert row["window_offset"] == window_offset(spec.key)


def test_reply_now_follows_the_window(redis_url: str, unique_name: Callable[[str], str]) -> None:
    prefix = unique_name("pg")
    spec = SeedServer("fabrikam", "mail.fabrikam.com", NOW - timedelta(days=65))  # stage 5: block 5, throttle 30

    async def scenario() -> dict[int, Any]:
        client, keys, reader = await _reader(redis_url, prefix)
        try:
            await seed_server(client, keys, POLICY, spec, NOW.replace(minute=0))
            out = {}
            for m in (0, 4, 5, 34, 35, 59):
                rows = await reader.rows("fabrikam", at_window_minute(spec.key, m))
                out[m] = rows[0]
            return out
        finally:
            await client.aclose()

    rows = run(scenario())
    assert rows[0].stage == 5
    assert (rows[0].block_minutes, rows[0].throttle_minutes) == (5, 30)
    for m in (0, 4):
        assert rows[m].reply_now.action == "block", m
        assert rows[m].reply_now.reply == BLOCK_5
    for m in (5, 34):
        assert rows[m].reply_now.action == "throttle", m
        assert rows[m].reply_now.reply == THROTTLE_5
    for m in (35, 59):
        assert rows[m].reply_now.action == "accept", m
        assert rows[m].reply_now.reply == "250"
        assert rows[m].reply_now.reason == "outside-window"
    # the block window ends 5 minutes after the cycle start
    start = at_window_minute(spec.key, 0).replace(second=0)
    assert rows[0].reply_now.changes_at in (start + timedelta(minutes=5), start + timedelta(minutes=5 - 60))


def test_paused_and_remediated_servers_are_accepted(redis_url: str, unique_name: Callable[[str], str]) -> None:
    prefix = unique_name("pg")
    pause = PauseState(until=NOW + timedelta(days=10), started_at=NOW - timedelta(days=1), charged_year=2026,
                       used=((2026, 11),))
    blocked = SeedServer("northwind", "ex01.northwind.test", NOW - timedelta(days=120))  # stage 8: 60 min block
    fixed = SeedServer("northwind", "ex03.northwind.test", None, status="current", rule="current_su",
                       build="15.1.2507.61", previous_stage=4)

    async def scenario() -> Any:
        client, keys, reader = await _reader(redis_url, prefix)
        try:
            await seed_server(client, keys, POLICY, blocked, NOW, pause=pause)
            await seed_server(client, keys, POLICY, fixed, NOW)
            await seed_pause(client, keys, "northwind", pause)
            return await reader.rows("northwind", NOW), await reader.pause("northwind", NOW)
        finally:
            await client.aclose()

    rows, pause_summary = run(scenario())
    by_name = {row.ServerFQDN: row for row in rows}
    paused = by_name["ex01.northwind.test"]
    assert paused.stage == 8 and paused.block_minutes == 60
    assert paused.paused_until == pause.until
    assert paused.reply_now.action == "accept" and paused.reply_now.reason == "paused"
    assert paused.NextStage is None and paused.NextStageStartDate is None  # the last stage
    remediated = by_name["ex03.northwind.test"]
    assert remediated.stage == 0
    assert remediated.FirstDetectedDate is None and remediated.ThrottleEnabledDate is None
    assert remediated.reply_now.reply == "250" and remediated.reply_now.reason == "not-enforced"
    assert [row.ServerFQDN for row in rows] == ["ex01.northwind.test", "ex03.northwind.test"]  # stage desc
    assert pause_summary.active and pause_summary.days_left_this_year == 79
    assert pause_summary.to_json()["used_days"] == {"2026": 11}


def test_reply_now_edges() -> None:
    verdict = {"stage": 2, "throttle_minutes": 5, "block_minutes": 5, "window_offset": 58,
               "effective_at": "2026-11-01T00:00:00Z", "valid_until": "2026-12-01T00:00:00Z", "paused_until": None,
               "replies": {"throttle": "450 4.7.230 t", "block": "550 5.7.230 b"}}
    # the window wraps around the hour: offset 58 -> minutes 58, 59, 0, 1, 2 block; 3..7 throttle
    assert reply_now(verdict, NOW.replace(minute=58)).reply == "550 5.7.230 b"
    assert reply_now(verdict, NOW.replace(minute=2)).reply == "550 5.7.230 b"
    assert reply_now(verdict, NOW.replace(minute=3)).reply == "450 4.7.230 t"
    assert reply_now(verdict, NOW.replace(minute=7)).reply == "450 4.7.230 t"
    assert reply_now(verdict, NOW.replace(minute=8)).reply == "250"
    # like the edge: not yet effective and expired verdicts accept
    early = reply_now(verdict, datetime(2026, 10, 31, 23, 58, tzinfo=UTC))
    assert (early.action, early.reason) == ("accept", "not-yet-effective")
    late = reply_now(verdict, datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    assert (late.action, late.reason) == ("accept", "expired")
    assert reply_now(None, NOW).reason == "no-verdict"
    assert reply_now({"stage": "x"}, NOW).reason == "no-verdict"  # garbage never raises


def test_rows_are_read_in_pipelined_chunks(redis_url: str, unique_name: Callable[[str], str]) -> None:
    prefix = unique_name("pg")

    class CountingRedis(aioredis.Redis):
        pipelines = 0

        def pipeline(self, *args: Any, **kwargs: Any) -> Any:
            type(self).pipelines += 1
            return super().pipeline(*args, **kwargs)

    async def scenario() -> tuple[int, int]:
        client = CountingRedis.from_url(redis_url)
        keys = KeySchema(prefix)
        try:
            for n in range(45):
                await seed_server(client, keys, POLICY, SeedServer("bulk", f"ex{n:02}.bulk.test",
                                                                  NOW - timedelta(days=n)), NOW)
            CountingRedis.pipelines = 0
            rows = await ReportReader(StateStore(client, keys), POLICY, chunk=20).rows("bulk", NOW)
            return len(rows), CountingRedis.pipelines
        finally:
            await client.aclose()

    count, pipelines = run(scenario())
    assert count == 45
    assert pipelines == 3  # 45 servers in chunks of 20: three round trips, not one per field


def test_daily_estimates_use_the_stage_of_each_day(redis_url: str, unique_name: Callable[[str], str]) -> None:
    prefix = unique_name("pg")
    # detected 31 days ago: yesterday was day 30 (stage 2, 5 min/hr), the day before day 29 (stage 1)
    spec = SeedServer("est", "ex.est.test", datetime(2026, 10, 28, 9, 0, tzinfo=UTC),
                      messages={day(0): 60, day(1): 60, day(2): 60})

    async def scenario() -> Any:
        client, keys, reader = await _reader(redis_url, prefix)
        try:
            await seed_server(client, keys, POLICY, spec, NOW)
            return await reader.rows("est", NOW)
        finally:
            await client.aclose()

    rows = run(scenario())
    totals = {d["date"]: d for d in daily_totals(rows, POLICY)}
    # (HyperLogLog counts are exact at these sizes)
    assert totals[day(0)] == {"date": day(0), "messages": 60, "throttled_estimate": 5, "blocked_estimate": 0}
    assert totals[day(1)]["throttled_estimate"] == 5
    assert totals[day(2)]["throttled_estimate"] == 0  # still report-only that day


def test_cli_renderings(redis_url: str, unique_name: Callable[[str], str]) -> None:
    prefix = unique_name("pg")
    evil = SeedServer("cli", "=cmd|calc.cli.test", NOW - timedelta(days=45), messages={day(0): 4})
    good = SeedServer("cli", "ex-long-name-01.cli.test", NOW - timedelta(days=5))

    async def scenario() -> tuple[str, str, str, str]:
        client, keys, _ = await _reader(redis_url, prefix)
        try:
            await seed_server(client, keys, POLICY, evil, NOW)
            await seed_server(client, keys, POLICY, good, NOW)
        finally:
            await client.aclose()
        return (await render_report(redis_url, prefix, None, "cli", "table", False, NOW),
                await render_report(redis_url, prefix, None, "cli", "table", True, NOW),
                await render_report(redis_url, prefix, None, "cli", "csv", False, NOW),
                await render_report(redis_url, prefix, None, "cli", "json", False, NOW))

    table, coloured, csv_text, json_text = run(scenario())
    lines = table.splitlines()
    assert lines[0].startswith("Tenant cli: 2 servers. Enforcement not paused; 90 of 90 pause days left in 2026.")
    header = lines[1]
    assert header.startswith("SERVER") and "THROTTLE FROM" in header and "REPLY NOW" in header
    # aligned: every column starts at the same offset in every line
    status_col = header.index("STATUS")
    assert lines[2][status_col:].startswith("behind") and lines[3][status_col:].startswith("behind")
    assert "2026-11-13" in lines[2]  # throttle date of the stage-3 server (sorted first)
    assert "\033[" not in table and "\033[33m3" in coloured
    records = list(csv.DictReader(io.StringIO(csv_text)))
    assert [r["ServerFQDN"] for r in records] == ["'=cmd|calc.cli.test", "ex-long-name-01.cli.test"]
    assert records[0]["RecommendedBuildVersions"] == "15.1.2507.61 (15.01.2507.061)"
    assert records[0]["messages_today"] == "4" and records[0]["NextStageThrottleRate"] == "20"
    document = orjson.loads(json_text)
    assert document["tenant_id"] == "cli" and len(document["servers"]) == 2
    assert document["pause"]["days_left_this_year"] == 90


def test_server_behind_an_out_of_scope_connector_has_no_enforcement_dates(
        redis_url: str, unique_name: Callable[[str], str]) -> None:
    prefix = unique_name("pg")
    detected = datetime(2026, 10, 14, 15, 30, tzinfo=UTC)  # 45 days: stage 3 if it were enforced
    partner = SeedServer("contoso", "relay.fabrikam.com", detected, connector_type="Partner")

    row = seeded_rows(redis_url, prefix, partner)[0].to_json()
    assert row["FirstDetectedDate"] == "2026-10-14T15:30:00Z" and row["status"] == "behind"  # still reported
    assert row["ThrottleEnabledDate"] is None and row["BlockingEnabledDate"] is None
    assert row["NextStage"] is None and row["NextStageStartDate"] is None
    assert (row["stage"], row["stage_due"], row["throttle_minutes"], row["block_minutes"]) == (0, 0, 0, 0)
    assert row["reply_now"]["action"] == "accept"
