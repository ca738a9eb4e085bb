"""The running API follows its policy file like the workers do: a changed file that validates is swapped
in within the check interval (here the tenant-level shadow flag), a broken one is logged once, counted
and ignored, and the API keeps answering under the last good version. Real Redis and broker."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import aiohttp
import pytest

from processors.policyfile import PolicyFileSource
from tests.api.helpers import OPERATOR_TOKEN, TENANT_A_TOKEN, RunningApi, create_topic, running_api
from tests.report.seed import SeedServer, seed_server

pytestmark = pytest.mark.integration

PACKAGED = resources.files("processors").joinpath("data", "policy.toml").read_text("utf-8")
OVERRIDES = "[shadow.tenants]              # per tenant, overriding default: tenant id = true | false\n"
CHECK_INTERVAL_S = 0.05
DEADLINE_S = 10.0
REJECTED = 'patchgate_policy_reloads_total{outcome="rejected"}'


def policy_text(contoso_shadowed: bool) -> str:
    assert OVERRIDES in PACKAGED
    return PACKAGED.replace(OVERRIDES, f"{OVERRIDES}contoso = {str(contoso_shadowed).lower()}\n")


def replace_file(path: Path, text: str) -> None:
    """Write then rename, as the README tells operators to: the API never sees a half-written file."""
    partial = path.with_name(path.name + ".new")
    partial.write_text(text)
    partial.replace(path)


async def get_json(session: aiohttp.ClientSession, url: str, token: str) -> object:
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def shadow_flags(session: aiohttp.ClientSession, api: RunningApi) -> tuple[bool, bool]:
    """Contoso's tenant-level flag on both routes that show it: its servers, and the operator's tenant list."""
    servers = await get_json(session, f"{api.base}/v1/tenants/contoso/servers", TENANT_A_TOKEN)
    tenants = await get_json(session, f"{api.base}/v1/tenants", OPERATOR_TOKEN)
    assert isinstance(servers, dict) and isinstance(tenants, dict)
    listed = {t["tenant_id"]: t["shadow"] for t in tenants["tenants"]}
    return servers["shadow"], listed["contoso"]


async def shows(session: aiohttp.ClientSession, api: RunningApi, shadowed: bool) -> bool:
    return await shadow_flags(session, api) == (shadowed, shadowed)


async def rejected_count(session: aiohttp.ClientSession, api: RunningApi) -> float:
    async with session.get(f"{api.base}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(REJECTED + " "):
                return float(line.split()[-1])
    return 0.0


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` (each poll is a real request) until it holds; fail after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while not await condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S}s: {what}"
        await asyncio.sleep(CHECK_INTERVAL_S / 5)  # pacing between polls, not synchronisation


def test_a_rewritten_policy_file_changes_the_shadow_flag_and_a_broken_one_is_ignored(
        redis_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    commands = unique_name("commands")
    create_topic(kafka_bootstrap, commands)
    path = tmp_path / "policy.toml"
    replace_file(path, policy_text(contoso_shadowed=False))
    source = PolicyFileSource(path, check_interval=CHECK_INTERVAL_S)

    async def scenario() -> None:
        now = datetime.now(UTC)
        async with running_api(redis_url, kafka_bootstrap, unique_name("pg"), commands, policies=source) as api, \
                aiohttp.ClientSession() as s:
            await seed_server(api.redis, api.keys, source.current.enforcement,
                              SeedServer("contoso", "ex01.contoso.com", now - timedelta(days=45)), now)
            assert await shadow_flags(s, api) == (False, False)

            replace_file(path, policy_text(contoso_shadowed=True))
            await eventually(lambda: shows(s, api, shadowed=True), "the rewritten file shadows contoso")
            good = source.current

            rejected_before = await rejected_count(s, api)
            replace_file(path, policy_text(contoso_shadowed=False) + "\n[shadw]\ndefault = true\n")  # a typo
            await eventually(lambda: _above(rejected_count(s, api), rejected_before), "the broken file rejected")
            assert source.current is good
            assert await shadow_flags(s, api) == (True, True)  # still up, under the last good version

            replace_file(path, policy_text(contoso_shadowed=False))  # a good file after it is taken again
            await eventually(lambda: shows(s, api, shadowed=False), "the repaired file ends shadow mode")
            assert await rejected_count(s, api) == rejected_before + 1  # once per bad change, not per check

    with caplog.at_level(logging.INFO, logger="processors.policyfile"):
        asyncio.run(scenario())
    shadowing, repaired = (digest(policy_text(flag)) for flag in (True, False))
    records = [r for r in caplog.records if r.name == "processors.policyfile"]
    assert [r.getMessage() for r in records if r.levelno == logging.INFO] == [
        f"policy reloaded: version {shadowing}", f"policy reloaded: version {repaired}"]
    rejections = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert len(rejections) == 1, rejections
    assert rejections[0].startswith(f"new policy rejected, keeping version {shadowing}: {path}: ")
    assert "shadw" in rejections[0] and "\n" not in rejections[0]


def digest(text: str) -> str:
    """How the log lines name a version of the policy file."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


async def _above(count: Awaitable[float], floor: float) -> bool:
    return await count > floor
