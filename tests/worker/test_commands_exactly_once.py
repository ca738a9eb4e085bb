"""A pause command is applied exactly once in effect, whatever fails between its mark and its effects.

Real Redis, the real broker and the real worker runtime: a failure is injected into the
re-evaluation that follows the command's transaction (a crash of the worker, or a Redis error that
the runtime retries), the command is delivered again (as Kafka redelivers uncommitted input to the
restarted worker), and the servers must end paused (no edge throttles or blocks them) with the
same verdicts as an uninterrupted run, the notification published once, and nothing more happening
on further redeliveries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from edge.verdicts import compile_verdict
from processors.devservices.worker_process import WorkerProcess
from processors.enforcement.policy import load_enforcement_policy
from processors.kafka.commands import pause_command
from processors.kafka.delivery import KafkaOutput
from processors.replay.driver import ReplayDriver
from processors.settings import Settings
from processors.state.keys import KeySchema
from processors.state.store import StateStore
from processors.worker.clock import WallClock
from processors.worker.policies import PolicySource
from processors.worker.processing import RawMessage
from processors.worker.runtime import WorkerRuntime
from tests.report.seed import SeedServer, seed_server
from tests.worker.harness import isolated_settings, read_topic

pytestmark = pytest.mark.integration
T = datetime(2026, 11, 2, 9, tzinfo=UTC)
SERVERS = [SeedServer("contoso", f"ex0{n}.contoso.com", T - timedelta(days=days), ips=[f"203.0.113.{n}"])
           for n, days in enumerate((30, 45, 60, 100), start=1)]


class InjectedCrash(Exception):
    """Stands for the worker dying: nothing after it runs in this process."""


def fail_once(runtime: WorkerRuntime, error: Exception) -> None:
    """Make the runtime's next tenant re-evaluation fail with ``error``, later ones work."""
    original = runtime.reevaluate_tenant
    failures = [error]

    async def reevaluate(tenant: str, at: datetime, pause: Any = None) -> None:
        if failures:
            raise failures.pop()
        await original(tenant, at, pause)

    runtime.reevaluate_tenant = reevaluate  # type: ignore[method-assign]


async def started_runtime(settings: Settings) -> WorkerRuntime:
    store = StateStore.from_url(settings.redis_url, KeySchema(settings.key_prefix))
    runtime = WorkerRuntime(settings, store, KafkaOutput(settings.kafka), PolicySource(), WallClock())
    await runtime.start()
    return runtime


async def stop(runtime: WorkerRuntime) -> None:
    await runtime.store.close()
    runtime.output.producer.flush(5)


async def seed_enforced_servers(settings: Settings) -> None:
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    keys = KeySchema(settings.key_prefix)
    policy = load_enforcement_policy()
    for spec in SERVERS:
        fields = await seed_server(client, keys, policy, spec, T)
        assert enforcing(orjson.loads(fields["verdict"])), spec.key  # each server is throttled or blocked
    await client.aclose()


async def apply_pause(settings: Settings, fault: str) -> None:
    """Seed enforced servers, then deliver one pause command with ``fault`` injected, and again."""
    await seed_enforced_servers(settings)
    message = RawMessage(settings.topic_commands, 0, 0, b"contoso",
                         orjson.dumps(pause_command("contoso", 10, False, "test", at=T)))
    runtime = await started_runtime(settings)
    if fault == "crash":
        fail_once(runtime, InjectedCrash("killed between the command mark and the re-evaluation"))
        with pytest.raises(InjectedCrash):
            await runtime.process_command(message)
        await stop(runtime)
        runtime = await started_runtime(settings)  # the restarted worker gets the command again
        assert await runtime.process_command(message) is None  # applied before: only its effects rerun
    elif fault == "redis_error":
        fail_once(runtime, RedisConnectionError("injected: connection reset"))
        outcome = await runtime.process_command(message)  # retried inside, like an outage
        assert outcome is not None and outcome.kind == "pause_started"
    else:
        outcome = await runtime.process_command(message)
        assert outcome is not None and outcome.kind == "pause_started"
    assert await runtime.process_command(message) is None  # a further redelivery changes nothing
    await stop(runtime)


def enforcing(verdict: dict[str, Any], start: datetime = T) -> bool:
    """Whether an edge holding ``verdict`` would throttle or block in some minute of the hour."""
    compiled = compile_verdict(verdict)
    return any(compiled.decide(start.timestamp() + 60 * minute).enforced for minute in range(60))


def fingerprints(settings: Settings) -> dict[str, bytes | None]:
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySchema(settings.key_prefix)
    return {spec.key: client.hget(keys.server(spec.key), "fingerprint") for spec in SERVERS}  # type: ignore[misc]


@pytest.mark.parametrize("fault", ["crash", "redis_error"])
def test_a_failure_between_the_command_mark_and_the_reevaluation_still_pauses_every_server(
        fault: str, kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name)
    uninterrupted = isolated_settings(kafka_bootstrap, redis_url, unique_name)
    asyncio.run(apply_pause(settings, fault))
    asyncio.run(apply_pause(uninterrupted, "none"))

    assert_paused_once(settings)
    assert fingerprints(settings) == fingerprints(uninterrupted)  # converged to the uninterrupted run's verdicts


def assert_paused_once(settings: Settings) -> None:
    """Every server has one published verdict, paused for the pause's whole span; one notification."""
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySchema(settings.key_prefix)
    until = datetime.fromisoformat(client.hget(keys.tenant_pause("contoso"), "until").decode())  # type: ignore[union-attr]
    assert until == T + timedelta(days=10)
    verdicts: dict[str, list[dict[str, Any]]] = {}
    for raw_key, value in read_topic(settings.kafka_bootstrap, settings.topic_verdicts):
        verdicts.setdefault((raw_key or b"").decode(), []).append(value)
    assert sorted(verdicts) == sorted(spec.key for spec in SERVERS)
    for key, published in verdicts.items():
        assert len(published) == 1, key  # one paused verdict per server, not one per delivery
        assert published[0]["paused_until"] == until.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert not enforcing(published[0]) and not enforcing(published[0], T + timedelta(days=9, hours=23))
    notices = [value for _, value in read_topic(settings.kafka_bootstrap, settings.topic_notifications)]
    started = [n["notification_id"] for n in notices if n["kind"] == "pause_started"]
    assert len(started) == len(set(started)) == 1
    assert client.smembers(keys.tenant_commands_open("contoso")) == set()
    assert client.zscore(keys.due, "t|contoso") == until.timestamp()


def test_a_worker_killed_right_after_the_command_transaction_is_completed_on_redelivery(
        settings: Settings) -> None:
    command = pause_command("contoso", 10, False, "test", at=T)

    async def die_after_the_transaction() -> None:
        """What a worker SIGKILLed right after the command's transaction leaves in Redis."""
        await seed_enforced_servers(settings)
        store = StateStore.from_url(settings.redis_url, KeySchema(settings.key_prefix))
        runtime = WorkerRuntime(settings, store, KafkaOutput(settings.kafka), PolicySource(), WallClock())
        state, outcome = await runtime._record_command(command, "contoso", T)
        assert state == "applied" and outcome is not None and outcome.kind == "pause_started"
        await stop(runtime)

    asyncio.run(die_after_the_transaction())
    worker = WorkerProcess(settings)
    worker.start()
    driver = ReplayDriver(settings)
    try:  # the command was never committed in the group, so the next worker gets it from the broker
        driver.send([(settings.topic_commands, b"contoso", orjson.dumps(command))])
    finally:
        driver.close()
        worker.stop()
    assert_paused_once(settings)
