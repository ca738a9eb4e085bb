"""The report page in a real Chromium against the real API, Redis, broker and worker runtime.

The pause form's POST goes through the API to the commands topic; the test consumes the command
from the topic and hands it to the real ``WorkerRuntime.process_command`` (what the worker's commands
agent does), and the page, which polls the pause state, must show the applied pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from playwright.async_api import async_playwright, expect

from processors.enforcement.policy import load_enforcement_policy
from processors.kafka.delivery import KafkaOutput
from processors.kafka.topics import ensure_topics
from processors.settings import Settings
from processors.state.store import StateStore
from processors.worker.clock import WallClock
from processors.worker.policies import PolicySource
from processors.worker.processing import RawMessage
from processors.worker.runtime import WorkerRuntime
from tests.api.helpers import OPERATOR_TOKEN, TENANT_A_TOKEN, read_topic, running_api
from tests.report.seed import SeedServer, seed_server

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--no-first-run",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
POLICY = load_enforcement_policy()


def test_report_page_shows_servers_chart_and_applies_a_pause(
        redis_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    suffix = unique_name("page")
    settings = Settings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, key_prefix=suffix,
                        topic_metadata=f"{suffix}.metadata", topic_verdicts=f"{suffix}.verdicts",
                        topic_notifications=f"{suffix}.notifications", topic_deadletter=f"{suffix}.deadletter",
                        topic_commands=f"{suffix}.commands", metadata_partitions=2)
    ensure_topics(settings)
    ARTIFACTS.mkdir(exist_ok=True)

    async def scenario() -> None:
        now = datetime.now(UTC)
        days = [(now.date() - timedelta(days=n)).isoformat() for n in range(30)]
        async with running_api(redis_url, kafka_bootstrap, settings.key_prefix, settings.topic_commands) as api:
            specs = [
                SeedServer("contoso", "EX01.contoso.com", now - timedelta(days=45), ips=["203.0.113.10"],
                           messages={d: 40 + (i * 7) % 25 for i, d in enumerate(days)}),
                SeedServer("contoso", "EX02.contoso.com", now - timedelta(days=66), status="unsupported",
                           rule="end_of_support", product="Exchange Server 2013", build="15.0.1497.48",
                           build_long="15.00.1497.048", ips=["203.0.113.11"],
                           messages={d: 20 + (i * 5) % 11 for i, d in enumerate(days)}),
                SeedServer("contoso", "EX03.contoso.com", now - timedelta(days=10), ips=["203.0.113.12"],
                           messages={d: 12 for d in days[:10]}),
                SeedServer("contoso", "ex04.contoso.com", None, status="current", rule="current_su",
                           build="15.1.2507.61", messages={d: 30 for d in days[:5]}),
                SeedServer("fabrikam", "mail.fabrikam.com", now - timedelta(days=95)),
            ]
            for spec in specs:
                await seed_server(api.redis, api.keys, POLICY, spec, now)
            await api.redis.lpush(api.keys.tenant_notifications("contoso"), orjson.dumps({
                "notification_id": "contoso/ex01.contoso.com|stage_started|x", "kind": "stage_started",
                "at": (now - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "text": "Mail from ex01.contoso.com is now throttled for 10 mins/hr (stage 3)."}))

            store = StateStore.from_url(redis_url, api.keys)
            runtime = WorkerRuntime(settings, store, KafkaOutput(settings.kafka), PolicySource(), WallClock())
            await runtime.start()

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = await browser.new_page(viewport={"width": 1680, "height": 1100})
                    errors: list[str] = []
                    page.on("pageerror", lambda error: errors.append(str(error)))
                    external: list[str] = []
                    page.on("request", lambda request: None if request.url.startswith(api.base)
                            else external.append(request.url))

                    # without a token the page asks for one
                    await page.goto(api.base + "/tenants/contoso")
                    await page.wait_for_selector("#message:not([hidden])")
                    assert "Sign in" in await page.inner_text("#message")

                    await page.goto(api.base + f"/tenants/contoso?token={TENANT_A_TOKEN}")
                    await expect(page.locator("#servers tbody tr")).to_have_count(4)
                    assert "token=" not in page.url  # taken out of the address bar
                    rows = await page.locator("#servers tbody tr").all_inner_texts()
                    assert [r.split("\t")[0] for r in rows] == [
                        "ex02.contoso.com", "ex01.contoso.com", "ex03.contoso.com", "ex04.contoso.com"]
                    assert "mail.fabrikam.com" not in await page.inner_text("#servers")
                    ex02 = rows[0]
                    assert "Exchange Server 2013" in ex02 and "15.0.1497.48" in ex02
                    reply = await page.inner_text("#servers tbody tr:first-child td.reply")
                    assert reply == "250" or reply.startswith(("450 4.7.230", "550 5.7.230"))
                    # stage chart: one bar per stage with servers (0, 1, 3, 5); daily chart: 30 days
                    stage_bars = await page.locator("#stage-chart rect.bar").evaluate_all(
                        "els => els.map(e => e.dataset.label + '=' + e.dataset.value)")
                    assert sorted(stage_bars) == ["stage 0 (not enforced)=1", "stage 1=1", "stage 3=1", "stage 5=1"]
                    days_drawn = await page.locator("#daily-chart rect.bar").evaluate_all(
                        "els => new Set(els.map(e => e.dataset.label)).size")
                    assert days_drawn == 30
                    throttled = await page.locator("#daily-chart rect.bar[data-series='throttled (est.)']").count()
                    assert throttled > 0
                    assert "estimates" in await page.inner_text("#estimate-note")
                    countdown = await page.inner_text("#servers tbody tr:nth-child(2) td.countdown")
                    assert countdown.count(":") == 2 and "d " in countdown  # e.g. "4d 13:42:07"
                    assert await page.inner_text("#pause-left") == "90 / 90"
                    assert "now throttled for 10 mins/hr" in await page.inner_text("#notifications")
                    await page.screenshot(path=str(ARTIFACTS / "report-page.png"), full_page=True)

                    # the pause form: POST through the API, command on the topic, applied by the worker
                    await page.fill("#pause-days", "10")
                    await page.click("#pause-submit")
                    await expect(page.locator("#pause-result")).to_contain_text("accepted")
                    records = await asyncio.to_thread(read_topic, kafka_bootstrap, settings.topic_commands,
                                                      lambda got: len(got) >= 1)
                    assert len(records) == 1
                    key, value = records[0]
                    command = orjson.loads(value or b"")
                    assert (key, command["action"], command["days"]) == (b"contoso", "pause_create", 10)
                    outcome = await runtime.process_command(RawMessage(settings.topic_commands, 0, 0, key, value))
                    assert outcome is not None and outcome.kind == "pause_started"

                    await expect(page.locator("#pause-result")).to_contain_text("applied", timeout=20000)
                    assert (await page.inner_text("#pause-state")).startswith("Paused until ")
                    assert await page.inner_text("#pause-left") == "80 / 90"
                    # the worker re-evaluated the servers: enforced ones now get 250 while paused
                    await expect(page.locator("#servers tbody tr:first-child td.reply")).to_have_text("250 (paused)")
                    await page.screenshot(path=str(ARTIFACTS / "report-page-paused.png"), full_page=True)
                    until_raw = await api.redis.hget(api.keys.tenant_pause("contoso"), "until")
                    assert isinstance(until_raw, bytes)
                    until = datetime.fromisoformat(until_raw.decode())
                    assert timedelta(days=10) - timedelta(minutes=5) < until - now <= timedelta(days=10, minutes=5)

                    # operator overview across tenants
                    await page.evaluate("sessionStorage.clear()")
                    await page.goto(api.base + f"/?token={OPERATOR_TOKEN}")
                    await expect(page.locator("#tenants tbody tr")).to_have_count(2)
                    overview = await page.inner_text("#tenants")
                    assert "contoso" in overview and "fabrikam" in overview and "80 / 90" in overview
                    assert await page.locator("#overview-chart rect.bar").count() >= 3
                    await page.screenshot(path=str(ARTIFACTS / "report-overview.png"), full_page=True)
                    assert errors == [], errors
                    assert external == [], external
                finally:
                    await browser.close()
                    await store.close()
                    runtime.output.producer.flush(5)

    asyncio.run(scenario())
