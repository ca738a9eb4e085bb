"""Sentinel over TLS (``rediss+sentinel://``) on a real TLS-only set with ACL users on the servers
and on the sentinel (the state contract suite's ``sentinel-tls`` run covers the store's operations):
the store follows a failover over TLS, the blocking scenario client works, and a missing CA, plain
text or a wrong sentinel password fail within the timeouts with one line that shows no password."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from processors.devservices.redis_sentinel import RedisSentinelGroup
from processors.settings import Settings, SettingsError
from processors.state.errors import StoreUnavailable
from processors.state.keys import KeySchema
from processors.state.store import ScenarioControl, StateStore
from tests.redis_ha.refusal import ping_error
from tests.services import started

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0  # the stores' socket and connect timeouts here


@pytest.fixture(scope="module")
def group() -> Iterator[RedisSentinelGroup]:
    with started(RedisSentinelGroup(tls=True)) as started_group:
        yield started_group


def secrets_of(group: RedisSentinelGroup) -> list[str]:
    assert group.tls is not None
    return [group.tls.password, group.tls.sentinel_password, group.tls.monitor_password]


def without_ca(url: str) -> str:
    head, _, query = url.partition("?")
    return f"{head}?{'&'.join(part for part in query.split('&') if not part.startswith('ssl_ca_certs='))}"




def test_without_the_ca_the_sentinel_certificate_is_refused_in_one_line(group: RedisSentinelGroup) -> None:
    error = ping_error(without_ca(group.url), TIMEOUT_S)
    assert "certificate verify failed" in error and f"sentinel 127.0.0.1:{group.sentinel_port}" in error
    assert "\n" not in error and "<redis." not in error
    assert not any(secret in error for secret in secrets_of(group))


def test_plain_text_to_tls_only_sentinels_fails_within_the_timeouts_with_a_hint(group: RedisSentinelGroup) -> None:
    url = without_ca(group.url).replace("rediss+sentinel://", "redis+sentinel://", 1)
    begun = time.monotonic()
    error = ping_error(url, TIMEOUT_S)
    assert time.monotonic() - begun < 4 * TIMEOUT_S  # no hang: at most connect + read timeouts, with slack
    assert "No master found" in error and "rediss+sentinel://" in error and "\n" not in error
    assert not any(secret in error for secret in secrets_of(group))


def test_a_wrong_sentinel_password_is_refused_without_showing_it(group: RedisSentinelGroup) -> None:
    assert group.tls is not None
    wrong = "not-the-" + group.tls.sentinel_password
    error = ping_error(group.url.replace(group.tls.sentinel_password, wrong), TIMEOUT_S)
    assert "invalid username-password pair" in error and f"sentinel 127.0.0.1:{group.sentinel_port}" in error
    assert wrong not in error and not any(secret in error for secret in secrets_of(group))


def test_the_settings_refuse_tls_options_on_plain_text_and_a_missing_ca_without_showing_passwords(
        group: RedisSentinelGroup) -> None:
    assert group.tls is not None
    settings = Settings.from_env({"PATCHGATE_REDIS_URL": group.url})
    assert settings.redis_url == group.url and not any(secret in repr(settings) for secret in secrets_of(group))
    plain = group.url.replace("rediss+sentinel://", "redis+sentinel://", 1)
    missing = group.url.replace(str(group.tls.ca_file), str(group.folder / "missing.pem"))
    for url, reason in ((plain, "ssl_ca_certs is a TLS setting"), (missing, "is no readable file")):
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({"PATCHGATE_REDIS_URL": url})
        message = str(caught.value)
        assert "PATCHGATE_REDIS_URL" in message and reason in message and "\n" not in message
        assert "sentinel_password=***" in message and ":***@" in message
        assert not any(secret in message for secret in secrets_of(group))


def test_the_blocking_scenario_client_and_the_store_share_the_master(
        group: RedisSentinelGroup, unique_name: Callable[[str], str]) -> None:
    keys = KeySchema(unique_name("pg"))
    control = ScenarioControl(group.url, keys)
    try:
        control.set_clock(1_793_000_000.5)
    finally:
        control.close()

    async def read() -> float | None:
        store = StateStore.from_url(group.url, keys)
        try:
            return await store.clock_now()
        finally:
            await store.close()
    assert asyncio.run(read()) == 1_793_000_000.5


def test_the_store_follows_a_failover_over_tls(group: RedisSentinelGroup, unique_name: Callable[[str], str]) -> None:
    keys = KeySchema(unique_name("pg"))
    old = group.current_master()
    url = f"{group.url}&wait_replicas=1&wait_timeout_ms=5000"  # a write counts once the replica has it

    def on_replica(field: str) -> bool:
        replica = redis.Redis(host="127.0.0.1", port=group.replica.port, socket_timeout=1, **group.server_login)
        return bool(replica.hexists(keys.progress, field))

    async def scenario() -> dict[str, str]:
        store = StateStore.from_url(url, keys, socket_timeout=TIMEOUT_S, connect_timeout=TIMEOUT_S)
        try:
            await store.mark_progress({"before": 1})  # the store now holds a TLS connection to the master
            assert on_replica("before")
            await asyncio.to_thread(group.fail_over)  # SIGKILL, then polls the sentinel for the new master
            await retried(lambda: store.mark_progress({"after": 2}), 30)
            return await store.progress()
        finally:
            await store.close()

    assert asyncio.run(scenario()) == {"before": "1", "after": "2"}
    new = group.current_master()
    assert old is not None and new is not None and new != old and new[1] == group.master.port
    master = redis.Redis(host="127.0.0.1", port=new[1], socket_timeout=1, **group.server_login)
    assert master.hgetall(keys.progress) == {b"before": b"1", b"after": b"2"}
    assert on_replica("after")  # the old master's port, rejoined as a replica over TLS


async def retried(attempt: Callable[[], object], timeout: float) -> None:
    """Run ``attempt`` until it succeeds (a caller's retry after StoreUnavailable), at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await attempt()  # type: ignore[misc]
            return
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the store did not reach the new master"
            await asyncio.sleep(0.1)  # the caller's retry pause
