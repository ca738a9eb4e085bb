"""Readiness of the real API, notifier and worker processes follows Redis and the broker.

Each test runs its own Tansu broker and Redis server, stops one of them and restarts it: /readyz
answers 503 naming the dependency while it is away and 200 again once it is back; /livez stays 200
throughout (the process is fine, its dependency is not). The processes log JSON
(``PATCHGATE_LOG_FORMAT=json``): every line they write parses as one object.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from processors.devservices.base import ManagedProcess, free_port
from processors.devservices.redis_server import RedisServer
from processors.devservices.tansu import TansuBroker
from processors.devservices.worker_process import WorkerProcess, patchgate_executable
from processors.kafka.topics import ensure_topics
from processors.settings import Settings
from tests.probes.conftest import probe, ready_with, wait_until
from tests.worker.harness import isolated_settings

pytestmark = pytest.mark.integration
TOKEN = "operator-token-0123456789"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def json_lines(path: Path) -> list[dict[str, object]]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    assert lines, "the process logged nothing"
    bad = [line for line in lines if not _is_json_object(line)]
    assert not bad, f"{len(bad)} line(s) are no JSON object, e.g. {bad[:3]}"
    return [orjson.loads(line) for line in lines]


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def flip(url: str, service: RedisServer | TansuBroker, reason: str, process: ManagedProcess,
         after_restart: Callable[[], object] = lambda: None) -> None:
    """Stop ``service``: 503 naming ``reason``; start it again: 200."""
    def log() -> str:
        return process.log_tail(20)

    service.stop()
    wait_until(ready_with(url + "/readyz", 503, reason), f"/readyz 503 naming {reason}", 60, log, process)
    assert probe(url + "/livez")[0] == 200
    service.start()
    after_restart()
    wait_until(ready_with(url + "/readyz", 200), f"/readyz 200 after {reason} is back", 120,
               lambda: (probe(url + "/readyz"), log()), process)


def component(name: str, args: list[str], settings: Settings, extra: dict[str, str]) -> ManagedProcess:
    env = {**os.environ, **settings.to_env(), "PATCHGATE_LOG_FORMAT": "json", **extra}
    return ManagedProcess(name, [*patchgate_executable(), *args], env=env)


def test_api_readiness_follows_redis_and_the_broker(own_broker: TansuBroker, own_redis: RedisServer,
                                                    unique_name: Callable[[str], str]) -> None:
    settings = isolated_settings(own_broker.bootstrap, own_redis.url, unique_name)
    port, api_port = free_port(), free_port()
    api = component("api", ["api"], settings, {"PATCHGATE_API_PORT": str(api_port),
                                               "PATCHGATE_API_PROBE_PORT": str(port),
                                               "PATCHGATE_API_TOKENS": f"{TOKEN}=*"})
    url = f"http://127.0.0.1:{port}"
    api.start()
    try:
        wait_until(ready_with(url + "/readyz", 200), "the API ready", 60, lambda: api.log_tail(20), api)
        request = urllib.request.Request(f"http://127.0.0.1:{api_port}/v1/tenants/contoso/pauses", data=b'{"days": 3}',
                                         headers={"Authorization": f"Bearer {TOKEN}"}, method="POST")
        try:  # a pause request: its log line carries the tenant
            with urllib.request.urlopen(request, timeout=30) as response:
                assert 200 <= response.status < 300
        except urllib.error.HTTPError as error:
            raise AssertionError(error.read().decode() + api.log_tail(10)) from None
        flip(url, own_redis, "redis", api)
        flip(url, own_broker, "kafka", api)
    finally:
        api.stop()
    entries = json_lines(api.log_path)
    assert {entry["component"] for entry in entries} == {"api"}
    assert any(entry.get("tenant") == "contoso" and "pause command" in str(entry["message"]) for entry in entries)
    assert any("not ready: redis" in str(entry["message"]) for entry in entries)
    assert TOKEN not in api.log_path.read_text()


def test_notifier_serves_probes_and_metrics(own_broker: TansuBroker, own_redis: RedisServer,
                                            unique_name: Callable[[str], str], tmp_path: Path) -> None:
    settings = isolated_settings(own_broker.bootstrap, own_redis.url, unique_name)
    config = tmp_path / "webhooks.toml"
    config.write_text(f"[tenants.contoso]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"{SECRET}\"\n")
    port = free_port()
    notify = component("notify", ["notify", "--config", str(config)], settings,
                       {"PATCHGATE_NOTIFY_PROBE_PORT": str(port), "PATCHGATE_NOTIFY_GROUP": unique_name("n")})
    url = f"http://127.0.0.1:{port}"
    notify.start()
    try:
        wait_until(ready_with(url + "/readyz", 200), "the notifier ready", 60, lambda: notify.log_tail(20), notify)
        flip(url, own_redis, "redis", notify)
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        assert 'patchgate_build_info{version="' in text
        assert "patchgate_webhook_deliveries_total" in text or "patchgate_events_in_total" in text
    finally:
        notify.stop()
    assert {entry["component"] for entry in json_lines(notify.log_path)} == {"notify"}
    assert SECRET not in notify.log_path.read_text()


def test_worker_readiness_follows_redis_and_the_broker(own_broker: TansuBroker, own_redis: RedisServer,
                                                       unique_name: Callable[[str], str]) -> None:
    port = free_port()
    settings = isolated_settings(own_broker.bootstrap, own_redis.url, unique_name, metrics_port=port)
    worker = WorkerProcess(settings, extra_env={"PATCHGATE_LOG_FORMAT": "json"})
    url = f"http://127.0.0.1:{port}"
    worker.start()
    try:
        wait_until(ready_with(url + "/readyz", 200), "the worker ready", 120,
                   lambda: (probe(url + "/readyz"), worker.log_tail(20)), worker)
        flip(url, own_redis, "redis", worker)
        # Tansu keeps nothing across a restart: the operator's topics are created again
        flip(url, own_broker, "kafka", worker, after_restart=lambda: ensure_topics(settings))
        assert probe(url + "/livez")[0] == 200
    finally:
        worker.stop()
    entries = json_lines(worker.log_path)
    assert {entry["component"] for entry in entries} == {"worker"}
    assert any("patchgate worker ready" in str(entry["message"]) for entry in entries)
