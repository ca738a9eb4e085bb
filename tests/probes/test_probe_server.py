"""The probe server's answers and the readiness bookkeeping, over real HTTP on a free loopback port."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterator

import orjson
import pytest

from processors.probes import Heartbeat, ProbeServer, Readiness, package_version, run_check, watch_condition
from tests.probes.conftest import probe, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[ProbeServer]:
    probe = ProbeServer("127.0.0.1", 0, Heartbeat(clock), Readiness("redis", "kafka"), live_max_age_s=30)
    probe.start()
    yield probe
    probe.close()


def test_livez_follows_the_heartbeat_age(server: ProbeServer, clock: FakeClock) -> None:
    status, body = get(server.url + "/livez")
    assert status == 200 and orjson.loads(body)["alive"] is True
    clock.now += 31  # the loop stopped beating
    status, body = get(server.url + "/livez")
    assert status == 503 and orjson.loads(body) == {"alive": False, "heartbeat_age_s": 31.0}
    server.heartbeat.beat()
    assert get(server.url + "/livez")[0] == 200


def test_readyz_names_every_failing_condition_until_all_hold(server: ProbeServer) -> None:
    status, body = get(server.url + "/readyz")
    assert status == 503
    assert orjson.loads(body) == {"ready": False, "reasons": {"redis": "not checked yet", "kafka": "not checked yet"}}
    server.readiness.set("redis", None)
    server.readiness.set("kafka", "no broker in the cluster metadata")
    assert orjson.loads(get(server.url + "/readyz")[1])["reasons"] == {"kafka": "no broker in the cluster metadata"}
    server.readiness.set("kafka", None)
    assert get(server.url + "/readyz") == (200, b'{"ready":true,"reasons":{}}\n')


def test_metrics_carry_the_build_info_and_the_conditions(server: ProbeServer) -> None:
    server.readiness.set("redis", None)
    status, body = get(server.url + "/metrics")
    text = body.decode()
    assert status == 200
    assert f'patchgate_build_info{{version="{package_version()}"}} 1.0' in text
    assert 'patchgate_ready{condition="redis"} 1.0' in text
    assert 'patchgate_ready{condition="kafka"} 0.0' in text


def test_other_paths_are_not_found(server: ProbeServer) -> None:
    status, body = get(server.url + "/admin")
    assert status == 404 and orjson.loads(body)["paths"] == ["/livez", "/readyz", "/metrics"]


def test_a_check_that_raises_or_hangs_is_a_reason_not_a_crash() -> None:
    async def boom() -> str | None:
        raise ConnectionError("Connection refused by 127.0.0.1:6379")

    async def hangs() -> str | None:
        await asyncio.sleep(3600)
        return None

    assert asyncio.run(run_check(boom)) == "ConnectionError: Connection refused by 127.0.0.1:6379"
    assert asyncio.run(run_check(hangs, timeout=0.05)) == "no answer within 0.05 s"


def test_watch_condition_keeps_the_condition_current_until_stopped() -> None:
    readiness = Readiness()
    answers = ["broker away", None]

    async def check() -> str | None:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    async def main() -> list[dict[str, str]]:
        stop = asyncio.Event()
        seen: list[dict[str, str]] = []
        task = asyncio.create_task(watch_condition(readiness, "kafka", check, stop, interval=0.01))
        deadline = asyncio.get_running_loop().time() + 5
        while (readiness.report()[0] is False or not seen) and asyncio.get_running_loop().time() < deadline:
            seen.append(readiness.report()[1])
            await asyncio.sleep(0.005)  # yields to the watcher; the loop ends on the condition
        stop.set()
        await task
        return seen

    seen = asyncio.run(main())
    assert {"kafka": "broker away"} in seen
    assert readiness.report() == (True, {})


def test_connections_beyond_the_bound_are_closed_unanswered(clock: FakeClock) -> None:
    import socket

    from processors.metrics import REGISTRY

    server = ProbeServer("127.0.0.1", 0, Heartbeat(clock), Readiness(), max_connections=2).start()
    idle = [socket.create_connection(server.address, timeout=5) for _ in range(2)]  # hold both slots
    try:
        before = REGISTRY.get_sample_value("patchgate_probe_connections_refused_total") or 0.0
        with socket.create_connection(server.address, timeout=5) as third:
            third.sendall(b"GET /livez HTTP/1.0\r\n\r\n")
            assert third.recv(100) == b""  # closed without an answer
        assert REGISTRY.get_sample_value("patchgate_probe_connections_refused_total") == before + 1
    finally:
        for sock in idle:
            sock.close()
    # the idle connections' threads end once their sockets close: the slots are free again
    wait_until(lambda: probe(server.url + "/livez")[0] == 200, "a free slot", 10)
    server.close()
