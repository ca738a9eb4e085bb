"""The 120-day sample replayed through the real worker process (Faust, real broker, real Redis)."""

from __future__ import annotations

from typing import Any

import pytest

from processors.contracts import contracts
from processors.devservices.worker_process import WorkerProcess
from processors.replay.driver import ReplayDriver
from processors.replay.sample import SERVERS, steps
from processors.settings import Settings
from processors.state.connection import connect
from processors.state.keys import KeySchema
from tests.worker.harness import read_topic, topic_size
from tests.worker.scenario_expectations import NOTIFICATIONS, VERDICTS

pytestmark = pytest.mark.integration


def verdict_table(settings: Settings) -> dict[str, list[tuple[str, int, str | None]]]:
    table: dict[str, list[tuple[int, tuple[str, int, str | None]]]] = {}
    for key, value in read_topic(settings.kafka_bootstrap, settings.topic_verdicts):
        contracts.verdict(value)
        assert key is not None and key.decode() == value["server_key"]
        table.setdefault(value["server_key"], []).append(
            (value["sequence"], (value["issued_at"], value["stage"], value["paused_until"])))
    result = {}
    for server_key, rows in table.items():
        sequences = [sequence for sequence, _ in rows]
        assert sequences == list(range(1, len(rows) + 1)), f"{server_key}: sequences {sequences}"
        result[server_key] = [row for _, row in rows]
    return result


def notification_table(settings: Settings) -> dict[str, list[tuple[str, str, int | None]]]:
    table: dict[str, list[tuple[str, str, int | None]]] = {}
    seen: set[str] = set()
    for key, value in read_topic(settings.kafka_bootstrap, settings.topic_notifications):
        contracts.notification(value)
        assert key is not None and key.decode() == value["tenant_id"]
        assert value["notification_id"] not in seen, f"duplicate {value['notification_id']}"
        seen.add(value["notification_id"])
        owner = value["server_key"] or value["tenant_id"]
        table.setdefault(owner, []).append((value["at"], value["kind"], value["stage"]))
    return table


def state_client(settings: Settings) -> Any:
    """A blocking client on the worker's Redis: one server or a Cluster, whichever the URL names."""
    return connect(settings.redis_url, 10, 5, blocking=True)


def server_hashes(settings: Settings) -> dict[str, dict[bytes, bytes]]:
    client = state_client(settings)
    keys = KeySchema(settings.key_prefix)
    return {s.server_key: dict(client.hgetall(keys.server(s.server_key))) for s in SERVERS}  # type: ignore[arg-type]


def test_sample_gives_exactly_the_expected_verdicts_and_notifications(
        settings: Settings, worker: WorkerProcess) -> None:
    driver = ReplayDriver(settings, step_timeout=90)
    driver.run(steps())
    assert verdict_table(settings) == VERDICTS
    assert notification_table(settings) == NOTIFICATIONS
    refused = [v for _, v in read_topic(settings.kafka_bootstrap, settings.topic_notifications)
               if v["kind"] == "pause_refused"]
    assert "40 days are left this year" in refused[0]["text"]

    # reported, never enforced: the state says why
    state = server_hashes(settings)
    assert state["fabrikam/hidden.fabrikam.com"][b"last_status"] == b"no_build"
    assert state["fabrikam/relay.fabrikam.com"][b"last_status"] == b"not_exchange"
    assert state["tailspin/partner.tailspin.com"][b"status"] == b"unsupported"
    assert state["contoso/se.contoso.com"][b"status"] == b"current"
    exim, domino = state["tailspin/exim.tailspin.com"], state["tailspin/domino.tailspin.com"]
    assert (exim[b"product_id"], exim[b"version"], exim[b"status"]) == (b"exim", b"4.89", b"behind")
    assert b"does not prove the patch level" in exim[b"reason"]
    assert (domino[b"product_id"], domino[b"version"], domino[b"status"]) == (b"domino", b"9.0.1FP10", b"unsupported")
    client = state_client(settings)
    keys = KeySchema(settings.key_prefix)
    assert client.pfcount(keys.server_day_hll("contoso/ex2019.contoso.com", "2026-10-05")) == 1
    assert client.smembers(keys.tenant_servers("fabrikam")) == {
        b"fabrikam/ex2016.fabrikam.com", b"fabrikam/ex2013.fabrikam.com", b"fabrikam/hidden.fabrikam.com",
        b"fabrikam/relay.fabrikam.com"}

    # redelivery: the whole metadata input again changes no state and publishes nothing
    before_state = server_hashes(settings)
    before_out = (topic_size(settings.kafka_bootstrap, settings.topic_verdicts),
                  topic_size(settings.kafka_bootstrap, settings.topic_notifications))
    replay = [step for step in steps() if step.kind == "mail"]
    driver.run(replay)
    ReplayDriver(settings, envelopes=False).run(replay)  # and as single records
    assert server_hashes(settings) == before_state
    assert (topic_size(settings.kafka_bootstrap, settings.topic_verdicts),
            topic_size(settings.kafka_bootstrap, settings.topic_notifications)) == before_out
    driver.close()


def test_kill_9_mid_scenario_gives_the_same_result(settings: Settings, worker: WorkerProcess) -> None:
    all_steps = steps()
    driver = ReplayDriver(settings, step_timeout=90)
    kill_points = {40, 41, 77, 104}
    for index in range(len(all_steps)):
        if index in kill_points:
            # produce the step's input, then crash the worker without waiting for it
            step = all_steps[index]
            if step.kind == "mail":
                driver.produce(driver.mail_messages(step), step.at)
                driver.producer.flush(10)
            worker.kill()
            worker.start()
        driver.run(all_steps, start=index, stop=index + 1)
    assert verdict_table(settings) == VERDICTS
    assert notification_table(settings) == NOTIFICATIONS
    driver.close()


