"""Commands are checked against their Kafka key on the real broker: the key (tenant id) is the authority."""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis

from processors.devservices.base import free_port
from processors.devservices.worker_process import WorkerProcess
from processors.kafka.commands import pause_command
from processors.replay.driver import ReplayDriver
from processors.settings import Settings
from processors.state.keys import KeySchema
from tests.worker.harness import isolated_settings, read_topic

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


@pytest.fixture
def metered(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> Iterator[Settings]:
    """Settings of a real worker process that serves /metrics; the worker runs while the test does."""
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name, metrics_port=free_port())
    worker = WorkerProcess(settings)
    worker.start()
    yield settings
    worker.stop()


def test_a_command_whose_tenant_disagrees_with_its_key_is_dead_lettered(metered: Settings) -> None:
    settings = metered
    driver = ReplayDriver(settings)
    try:
        foreign = pause_command("contoso", 30, False, "test", at=T0)
        keyless = pause_command("contoso", 20, False, "test", at=T0)
        own = pause_command("fabrikam", 10, False, "test", at=T0)
        driver.send([(settings.topic_commands, b"fabrikam", orjson.dumps(foreign)),
                     (settings.topic_commands, None, orjson.dumps(keyless)),  # type: ignore[list-item]
                     (settings.topic_commands, b"fabrikam", orjson.dumps(own))])
    finally:
        driver.close()

    letters: list[dict[str, Any]] = [v for _, v in read_topic(settings.kafka_bootstrap, settings.topic_deadletter)]
    by_key = {letter["source"]["key"]: letter for letter in letters}
    assert len(letters) == 2 and set(by_key) == {base64.b64encode(b"fabrikam").decode(), None}
    mismatch = by_key[base64.b64encode(b"fabrikam").decode()]
    assert mismatch["reason"].startswith("tenant mismatch:")
    assert "'contoso'" in mismatch["reason"] and "'fabrikam'" in mismatch["reason"]
    assert orjson.loads(base64.b64decode(mismatch["original"]))["command_id"] == foreign["command_id"]
    assert "Kafka key None" in by_key[None]["reason"]

    # neither tenant was paused by the foreign or keyless command; the tenant's own command applied
    notices = [v for _, v in read_topic(settings.kafka_bootstrap, settings.topic_notifications)]
    assert [(n["tenant_id"], n["kind"]) for n in notices] == [("fabrikam", "pause_started")]
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySchema(settings.key_prefix)
    assert client.hgetall(keys.tenant_pause("contoso")) == {}
    assert client.smembers(keys.tenant_commands("contoso")) == set()
    assert client.smembers(keys.tenant_commands("fabrikam")) == {str(own["command_id"]).encode()}
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=10) as response:
        exported = response.read().decode()
    assert 'patchgate_deadletter_total{reason="tenant_mismatch"} 2.0' in exported
