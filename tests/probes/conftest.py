"""A broker and a Redis server of the probe tests' own: the tests stop and restart them."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import orjson
import pytest

from processors.devservices.base import ManagedProcess
from processors.devservices.redis_server import RedisServer
from processors.devservices.tansu import TansuBroker


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def own_broker() -> Iterator[TansuBroker]:
    broker = TansuBroker()
    broker.start()
    yield broker
    broker.close()


def probe(url: str) -> tuple[int, dict[str, object]]:
    """(status, JSON body) of a probe; (0, {}) while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())
    except OSError:
        return 0, {}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0,
               describe: Callable[[], object] = lambda: "", process: ManagedProcess | None = None) -> None:
    """Poll ``condition`` until it holds; fail at the deadline, or at once when ``process`` exits."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process is None or process.process is None or process.process.poll() is None, \
            f"{process.name} exited while waiting for {what}:\n{process.log_tail(30)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {describe()}"
        time.sleep(0.1)  # polling a condition


def ready_with(url: str, status: int, reason: str | None = None) -> Callable[[], bool]:
    """A condition: /readyz answers ``status`` (and, when given, names ``reason`` among its reasons)."""
    def check() -> bool:
        got, body = probe(url)
        reasons = body.get("reasons", {})
        return got == status and (reason is None or (isinstance(reasons, dict) and reason in reasons))
    return check
