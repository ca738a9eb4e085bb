"""The CLI pieces: ``patchgate report``, ``patchgate api`` and ``patchgate notify`` through argparse."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from processors.api import cli as api_cli
from processors.devservices import free_port
from processors.enforcement.policy import load_enforcement_policy
from processors.notify import cli as notify_cli
from processors.report import cli as report_cli
from processors.state.keys import KeySchema
from tests.report.seed import SeedServer, seed_server

REPO = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="patchgate")
    sub = p.add_subparsers(dest="command", required=True)
    for register in (report_cli.register, api_cli.register, notify_cli.register):
        register(sub)
    return p


@pytest.mark.integration
def test_report_command_prints_table_csv_and_json(redis_url: str, unique_name: Callable[[str], str],
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    prefix = unique_name("pg")
    now = datetime.now(UTC)

    async def seed() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await seed_server(client, KeySchema(prefix), load_enforcement_policy(),
                              SeedServer("contoso", "ex01.contoso.com", now - timedelta(days=45)), now)
        finally:
            await client.aclose()

    asyncio.run(seed())
    monkeypatch.setenv("PATCHGATE_REDIS_URL", redis_url)
    monkeypatch.setenv("PATCHGATE_KEY_PREFIX", prefix)
    for argv, expected in [(["--tenant", "contoso"], "ex01.contoso.com  Exchange Server 2016"),
                           (["--tenant", "contoso", "--csv"], "ServerFQDN,Build,ExchangeServer,"),
                           (["--tenant", "contoso", "--json"], '"ServerFQDN": "ex01.contoso.com"')]:
        args = parser().parse_args(["report", *argv])
        assert args.handler(args) == 0
        out = capsys.readouterr().out
        assert expected in out, (argv, out)
        assert "\033[" not in out  # not a terminal: no colours
    args = parser().parse_args(["report", "--tenant", "bad tenant"])
    assert args.handler(args) == 2
    assert "invalid tenant id" in capsys.readouterr().err


def test_api_and_notify_refuse_missing_configuration(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PATCHGATE_API_TOKENS", raising=False)
    monkeypatch.delenv("PATCHGATE_API_TOKENS_FILE", raising=False)
    monkeypatch.delenv("PATCHGATE_NOTIFY_CONFIG", raising=False)
    args = parser().parse_args(["api"])
    assert args.handler(args) == 2
    assert "no API tokens configured" in capsys.readouterr().err
    monkeypatch.setenv("PATCHGATE_API_TOKENS", "short=contoso")
    assert args.handler(args) == 2
    assert "at least 16 characters" in capsys.readouterr().err
    monkeypatch.setenv("PATCHGATE_API_TOKENS", "cli-test-token-0123456789=contoso")
    for value, message in [("soon", "PATCHGATE_API_READ_TIMEOUT: expected a number"),
                           ("0", "PATCHGATE_API_READ_TIMEOUT: must be 0.1..3600"),
                           ("nan", "PATCHGATE_API_READ_TIMEOUT: must be 0.1..3600")]:
        monkeypatch.setenv("PATCHGATE_API_READ_TIMEOUT", value)
        assert args.handler(args) == 2
        assert message in capsys.readouterr().err, value
    monkeypatch.delenv("PATCHGATE_API_READ_TIMEOUT")
    for value, message in [("many", "PATCHGATE_API_MAX_CONNECTIONS: expected a number"),
                           ("0", "PATCHGATE_API_MAX_CONNECTIONS: must be 1..100000")]:
        monkeypatch.setenv("PATCHGATE_API_MAX_CONNECTIONS", value)
        assert args.handler(args) == 2
        assert message in capsys.readouterr().err, value
    monkeypatch.delenv("PATCHGATE_API_MAX_CONNECTIONS")
    args = parser().parse_args(["notify"])
    assert args.handler(args) == 2
    assert "no webhook configuration" in capsys.readouterr().err


def test_api_refuses_a_bad_policy_file_or_check_interval_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PATCHGATE_API_TOKENS_FILE", raising=False)
    monkeypatch.setenv("PATCHGATE_API_TOKENS", "cli-test-token-0123456789=contoso")
    args = parser().parse_args(["api"])
    for value in ("0", "3601", "nan"):
        monkeypatch.setenv("PATCHGATE_API_POLICY_CHECK_INTERVAL", value)
        assert args.handler(args) == 2
        assert capsys.readouterr().err == "patchgate api: PATCHGATE_API_POLICY_CHECK_INTERVAL: must be 0.05..3600\n"
    monkeypatch.delenv("PATCHGATE_API_POLICY_CHECK_INTERVAL")
    policy = tmp_path / "policy.toml"
    policy.write_text("[shadw]\n")
    monkeypatch.setenv("PATCHGATE_POLICY_FILE", str(policy))
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"patchgate api: {policy}: ") and "shadw" in err and err.count("\n") == 1


@pytest.mark.integration
def test_api_command_serves_until_terminated(redis_url: str, kafka_bootstrap: str,
                                             unique_name: Callable[[str], str]) -> None:
    port = free_port()
    env = {**os.environ, "PATCHGATE_REDIS_URL": redis_url, "PATCHGATE_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "PATCHGATE_KEY_PREFIX": unique_name("pg"), "PATCHGATE_API_PORT": str(port),
           "PATCHGATE_API_TOKENS": "cli-test-token-0123456789=contoso"}
    code = ("import sys, argparse; from processors.api.cli import register; p = argparse.ArgumentParser(); "
            "s = p.add_subparsers(); register(s); a = p.parse_args(['api']); sys.exit(a.handler(a))")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/tenants/contoso/pauses",
                                                 headers={"Authorization": "Bearer cli-test-token-0123456789"})
                with urllib.request.urlopen(request, timeout=2) as response:
                    status = response.status
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)  # not listening yet: poll again
        assert status == 200, "the api command did not answer"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/tenants/contoso?token=cli-test-token-0123456789",
                                    timeout=5) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    assert f"listening on http://127.0.0.1:{port}/" in output
    assert "GET /tenants/contoso 200" in output
    assert "cli-test-token" not in output  # the access log drops query strings and never logs headers


def test_access_log_never_contains_query_strings(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from aiohttp.test_utils import make_mocked_request
    from aiohttp.web import Response

    from processors.api.app import AccessLogger

    logger = logging.getLogger("patchgate.api.access.test")
    request = make_mocked_request("GET", "/tenants/contoso?token=secret-token-0123456789")
    with caplog.at_level(logging.INFO, logger=logger.name):
        AccessLogger(logger, "").log(request, Response(status=200), 0.0012)
    assert "/tenants/contoso" in caplog.text and "secret-token" not in caplog.text


def test_api_without_a_broker_reports_it_once_not_twice_a_second() -> None:
    """librdkafka retries a missing broker about twice a second; the API logs that once per minute."""
    port = free_port()
    env = {**os.environ, "PATCHGATE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "PATCHGATE_API_PORT": str(port),
           "PATCHGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "PATCHGATE_API_TOKENS": "cli-test-token-0123456789=contoso"}
    code = ("import sys, argparse; from processors.api.cli import register; p = argparse.ArgumentParser(); "
            "s = p.add_subparsers(); register(s); a = p.parse_args(['api']); sys.exit(a.handler(a))")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    answers = 0
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not answers and process.poll() is None:
            answers += _openapi_answers(port)
        assert answers, "the api command did not start"
        window_end = time.monotonic() + 5  # measurement window: unfiltered, librdkafka logs ~10 lines in it
        while time.monotonic() < window_end:
            answers += _openapi_answers(port)
            time.sleep(0.25)  # pacing of the probe requests, not a synchronisation
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    assert answers > 10  # the API kept answering all along
    refused = [line for line in output.splitlines() if "Connect to" in line]
    assert 1 <= len(refused) <= 2, output


def _openapi_answers(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2) as response:
            return int(response.status == 200)
    except (urllib.error.URLError, ConnectionError):
        time.sleep(0.1)  # not listening yet: poll again
        return 0


def test_repeated_message_filter_summarises_repeats() -> None:
    import logging

    from processors.kafka.logs import RepeatedMessageFilter

    now = [0.0]
    gate = RepeatedMessageFilter(window_s=60, clock=lambda: now[0])

    def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("k", level, __file__, 1, message, (), None)

    assert gate.filter(record("Connect to 127.0.0.1:9092 failed (after 0ms)"))
    for n in range(120):  # two a second for a minute, numbers varying
        now[0] = n / 2
        assert not gate.filter(record(f"Connect to 127.0.0.1:9092 failed (after {n}ms)"))
    assert gate.filter(record("Metadata request failed"))  # another message passes at once
    assert gate.filter(record("Connect to 127.0.0.1:9092 failed (after 0ms)", logging.WARNING))  # another level
    now[0] = 60.0
    summary = record("Connect to 127.0.0.1:9092 failed (after 3ms)")
    assert gate.filter(summary)
    assert summary.getMessage() == ("Connect to 127.0.0.1:9092 failed (after 3ms) "
                                    "(repeated 120 more times in the last 60s)")
    assert not gate.filter(record("Connect to 127.0.0.1:9092 failed (after 1ms)"))


def test_notify_without_a_broker_reports_it_once_not_twenty_times_a_second(tmp_path: Path) -> None:
    config = tmp_path / "notify.toml"
    config.write_text('[tenants.contoso]\nurl = "http://127.0.0.1:9/hook"\n')
    env = {**os.environ, "PATCHGATE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
           "PATCHGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "PATCHGATE_NOTIFY_CONFIG": str(config)}
    code = ("import sys, argparse; from processors.notify.cli import register; p = argparse.ArgumentParser(); "
            "s = p.add_subparsers(); register(s); a = p.parse_args(['notify']); sys.exit(a.handler(a))")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        with pytest.raises(subprocess.TimeoutExpired):  # measurement window: unfiltered, ~100 lines in it
            process.wait(timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    refused = [line for line in output.splitlines() if "Connect to" in line]
    assert 1 <= len(refused) <= 3, output  # the consumer's and the producer's, once each
