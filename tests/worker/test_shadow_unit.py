"""Shadow mode in the worker, on the in-memory store: a shadowed tenant's verdicts and notifications say
so; switching shadow mode in the hot-reloaded policy file makes the timer re-publish the verdicts of
that tenant's servers (not waiting for their next message), once, and a crash part-way through the
re-publication is completed by the next timer run, even of a freshly started worker."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from processors.kafka.commands import pause_command
from processors.report.reader import ReportReader
from processors.report.render import to_table
from processors.state.memory import MemoryStateStore
from processors.worker.policies import PolicySource
from tests.worker.factories import encode
from tests.worker.test_batch_unit import EX01, EX02, SETTINGS, T0, Driver, event

FAB = "fabrikam/mx.fabrikam.com"
POLICY_TEXT = resources.files("processors").joinpath("data/policy.toml").read_text()


def write_policy(path: Path, tenants: str) -> None:
    """Replace the policy file atomically (write, then rename) with ``[shadow.tenants]`` set to ``tenants``."""
    text = POLICY_TEXT.replace("# contoso = true\n", tenants)
    assert text != POLICY_TEXT or not tenants
    staged = path.with_suffix(".new")
    staged.write_text(text)
    os.replace(staged, path)


class Monotonic:
    """The in-memory store's clock for the timer lease, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def driver_on(path: Path, tenants: str, monotonic: Monotonic | None = None) -> Driver:
    write_policy(path, tenants)
    return Driver(store=MemoryStateStore(monotonic=monotonic or Monotonic()),
                  policies=PolicySource(path, check_interval=0))


def fed(driver: Driver) -> Driver:
    driver.feed(driver.events(event(1, T0), event(2, T0, server="ex02.contoso.com"),
                              event(3, T0, server="mx.fabrikam.com", tenant="fabrikam")))
    return driver


def shadow_flags(driver: Driver) -> list[tuple[str, int, bool]]:
    return [(v["server_key"], v["sequence"], v.get("shadow", False)) for v in driver.verdicts()]


def test_a_shadowed_tenants_verdicts_and_notifications_say_shadow(tmp_path: Path) -> None:
    driver = fed(driver_on(tmp_path / "policy.toml", "contoso = true\n"))
    assert sorted(shadow_flags(driver)) == [(EX01, 1, True), (EX02, 1, True), (FAB, 1, False)]
    notices = driver.output.on(SETTINGS.topic_notifications)
    assert sorted((n["server_key"], n["kind"], n.get("shadow", False)) for n in notices) == [
        (EX01, "detected", True), (EX02, "detected", True), (FAB, "detected", False)]
    at = T0 + timedelta(hours=1)
    command = pause_command("contoso", 7, False, "unit", at=at)
    asyncio.run(driver.runtime.process_command(driver.message(b"contoso", encode(command), SETTINGS.topic_commands)))
    (pause,) = [n for n in driver.output.on(SETTINGS.topic_notifications) if n["kind"] == "pause_started"]
    assert pause["shadow"] is True


def test_switching_shadow_off_republishes_the_tenants_verdicts_at_the_next_timer_run(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    driver = fed(driver_on(path, "contoso = true\n"))
    later = T0 + timedelta(hours=2)
    driver.tick(later)
    assert len(driver.verdicts()) == 3  # nothing changed: nothing published
    write_policy(path, "")
    driver.tick(later + timedelta(seconds=5))
    republished = shadow_flags(driver)[3:]
    assert sorted(republished) == [(EX01, 2, False), (EX02, 2, False)]  # fabrikam untouched
    assert all(v["stage"] == 1 for v in driver.verdicts()[3:])
    driver.tick(later + timedelta(seconds=10))
    assert len(driver.verdicts()) == 5  # once
    write_policy(path, "fabrikam = true\n")
    driver.tick(later + timedelta(seconds=15))
    assert shadow_flags(driver)[5:] == [(FAB, 2, True)]


def test_touching_the_file_without_changing_it_republishes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    driver = fed(driver_on(path, "contoso = true\n"))
    write_policy(path, "contoso = true\n")  # a new inode, the same content
    driver.tick(T0 + timedelta(hours=1))
    assert len(driver.verdicts()) == 3


class Crash(Exception):
    """Stands for the process dying at that point."""


def test_a_crash_part_way_through_the_republication_is_completed_by_a_freshly_started_worker(
        tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    monotonic = Monotonic()
    driver = fed(driver_on(path, "contoso = true\nfabrikam = true\n", monotonic))
    write_policy(path, "")
    runtime = driver.runtime
    commit = runtime.processor.commit
    calls = 0

    async def commit_then_crash(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Crash("killed after the first tenant's verdicts")
        await commit(*args, **kwargs)

    runtime.processor.commit = commit_then_crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        driver.tick(T0 + timedelta(hours=1))
    first = shadow_flags(driver)[3:]
    assert len(first) in (1, 2) and all(not flag for _, _, flag in first)  # one tenant done (tenant order is a set's)

    # a new process: its policy source starts with the new file, so only the store knows the work is unfinished
    driver.policies = PolicySource(path, check_interval=0)
    restarted = driver.worker("restarted-worker:2")
    assert restarted.policies.current.content == runtime.policies.current.content
    monotonic.now += 60  # the dead worker's timer lease expires
    driver.tick(T0 + timedelta(hours=1, minutes=1), restarted)
    assert sorted(shadow_flags(driver)[3:]) == [(EX01, 2, False), (EX02, 2, False), (FAB, 2, False)]
    driver.tick(T0 + timedelta(hours=1, minutes=2), restarted)
    assert len(driver.verdicts()) == 6


def test_the_judged_content_is_recorded_in_the_store(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    driver = fed(driver_on(path, ""))
    driver.tick(T0 + timedelta(minutes=1))
    before = asyncio.run(driver.store.progress())["policy"]
    assert before == driver.policies.current.content
    write_policy(path, "contoso = true\n")
    driver.tick(T0 + timedelta(minutes=2))
    after = asyncio.run(driver.store.progress())["policy"]
    assert after != before and after == driver.policies.current.content


def test_the_report_marks_the_shadowed_tenant_and_its_withheld_replies(tmp_path: Path) -> None:
    driver = fed(driver_on(tmp_path / "policy.toml", "contoso = true\n"))
    blocked_at = T0 + timedelta(days=91)  # stage 8: blocked 60 min/hr
    driver.tick(blocked_at)
    reader = ReportReader(driver.store, driver.policies.current.enforcement)
    summaries = {s.tenant_id: s.to_json() for s in asyncio.run(reader.summaries(blocked_at))}
    assert (summaries["contoso"]["shadow"], summaries["fabrikam"]["shadow"]) == (True, False)
    rows = {row.server_key: row for row in asyncio.run(reader.rows("contoso", blocked_at))}
    row = rows[EX01].to_json()
    assert (row["stage"], row["block_minutes"], row["shadow"]) == (8, 60, True)
    assert row["reply_now"]["action"] == "accept" and row["reply_now"]["reason"] == "shadow-block-window"
    assert row["reply_now"]["withheld"].startswith("550 5.7.230 Connecting Exchange server version is out-of-date")
    assert "250 (shadow 550)" in to_table(list(rows.values()))
    (fabrikam,) = asyncio.run(reader.rows("fabrikam", blocked_at))
    assert not fabrikam.shadow and fabrikam.reply_now.action == "block" and fabrikam.reply_now.withheld is None
