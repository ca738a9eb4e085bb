"""Liveness, readiness and metrics over HTTP for every long-running component.

One small server per process (worker, edge milter/policy, API, notifier) on the component's metrics
address answers:

- ``GET /livez``: 200 while the component's event loop beats its :class:`Heartbeat` (a task that
  beats every second); 503 with the heartbeat's age once it is older than ``live_max_age_s``: the
  loop is wedged and the process should be restarted.
- ``GET /readyz``: 200 when every readiness condition holds; 503 with a JSON body naming each
  failing condition and why (``{"ready": false, "reasons": {"redis": "...", ...}}``). Conditions are
  kept up to date by :func:`watch_condition` tasks on the component's loop (a Redis ping, a broker
  metadata request through the component's own client, the partitions assigned, ...), so a probe
  only reads them and never waits on Redis or Kafka itself.
- ``GET /metrics``: :data:`processors.metrics.REGISTRY` in Prometheus' text format, with
  ``patchgate_build_info{version}`` (set by :func:`set_build_info`).

The server runs in a daemon thread: a busy or wedged event loop still answers the probes (and the
liveness probe is the one that says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from processors.errors import PatchgateError
from processors.metrics import REGISTRY, exposition

log = logging.getLogger(__name__)
LIVE_MAX_AGE_S = 30.0  # a loop that has not beaten for this long is wedged
BEAT_INTERVAL_S = 1.0
CHECK_INTERVAL_S = 2.0  # how often a readiness condition is checked
CHECK_TIMEOUT_S = 5.0  # one check's bound (a Redis ping, a broker metadata request)
REQUEST_TIMEOUT_S = 5.0  # a probe client that does not send its request in time is dropped
REASON_LIMIT = 300  # characters of one failure reason in the JSON answer
MAX_CONNECTIONS = 32  # probe and scrape connections served at once; more are closed at once

BUILD_INFO = Gauge("patchgate_build_info", "1, labelled with the running patchgate version", ["version"],
                   registry=REGISTRY)
CONDITION_READY = Gauge("patchgate_ready", "1 while a readiness condition holds, else 0", ["condition"],
                        registry=REGISTRY)
PROBE_CONNECTIONS_REFUSED = Counter("patchgate_probe_connections_refused_total",
                                    "Connections to the probe and metrics server closed unanswered: too many open",
                                    registry=REGISTRY)


def package_version() -> str:
    try:
        return version("patchgate")
    except PackageNotFoundError:  # run from a source tree without installation
        return "unknown"


def set_build_info() -> str:
    """Set ``patchgate_build_info{version}`` to 1; returns the version."""
    running = package_version()
    BUILD_INFO.labels(running).set(1)
    return running


class Heartbeat:
    """The time of the event loop's last beat (monotonic); read from the probe thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def age(self) -> float:
        return max(0.0, self._clock() - self._last)

    async def run(self, stop: asyncio.Event, interval: float = BEAT_INTERVAL_S) -> None:
        """Beat every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            self.beat()
            await _pause(stop, interval)


class Readiness:
    """Named readiness conditions: ``None`` when one holds, else the reason it does not.

    A condition starts failing ("not checked yet") once declared, so a component is not ready before
    its first checks have passed.
    """

    def __init__(self, *conditions: str) -> None:
        self._lock = threading.Lock()
        self._reasons: dict[str, str | None] = {}
        for name in conditions:
            self.declare(name)

    def declare(self, name: str, reason: str = "not checked yet") -> None:
        self.set(name, reason)

    def set(self, name: str, reason: str | None) -> None:
        with self._lock:
            before = self._reasons.get(name, "")
            self._reasons[name] = reason
        CONDITION_READY.labels(name).set(0 if reason else 1)
        if reason != before:
            _log_change(name, before, reason)

    def report(self) -> tuple[bool, dict[str, str]]:
        """(ready, the failing conditions and their reasons)."""
        with self._lock:
            failing = {name: reason for name, reason in self._reasons.items() if reason}
        return not failing, failing


def _log_change(name: str, before: str | None, reason: str | None) -> None:
    if reason is None:
        log.info("ready: %s holds", name)
    elif before is None:
        log.warning("not ready: %s: %s", name, reason)


Check = Callable[[], Awaitable[str | None]]


async def watch_condition(readiness: Readiness, name: str, check: Check, stop: asyncio.Event,
                          interval: float = CHECK_INTERVAL_S, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Run ``check`` every ``interval`` seconds until ``stop``; its answer (or error) sets ``name``.

    ``check`` returns None when the condition holds, else a reason; an exception or a check slower
    than ``timeout`` counts as failing with that text.
    """
    readiness.declare(name)
    while not stop.is_set():
        readiness.set(name, await run_check(check, timeout))
        await _pause(stop, interval)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less when ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_check(check: Check, timeout: float = CHECK_TIMEOUT_S) -> str | None:
    """``check()``'s reason, or the failure's text (bounded) when it raises or times out."""
    try:
        return await asyncio.wait_for(check(), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except Exception as error:  # any failure of the dependency is a reason, never a crash
        return (f"{type(error).__name__}: {error}")[:REASON_LIMIT]


def redis_check(store: Any) -> Check:
    """A check that pings Redis through the state store (any object with ``async ping()``)."""

    async def check() -> str | None:
        await store.ping()
        return None

    return check


def kafka_check(client: Any, timeout: float = CHECK_TIMEOUT_S) -> Check:
    """A check that asks the brokers for metadata through one of the component's librdkafka clients."""

    async def check() -> str | None:
        loop = asyncio.get_running_loop()
        client.poll(0)  # serve the client's queued log lines and errors too
        metadata = await loop.run_in_executor(None, lambda: client.list_topics(timeout=timeout))
        return None if metadata.brokers else "no broker in the cluster metadata"

    return check


class BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most ``max_connections`` connections at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            PROBE_CONNECTIONS_REFUSED.inc()
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class ProbePortUnavailable(PatchgateError, OSError):
    """The probe server's address cannot be bound (in use, not local, not permitted)."""


class ProbeServer:
    """``/livez``, ``/readyz`` and ``/metrics`` on ``bind:port`` from a daemon thread."""

    def __init__(self, bind: str, port: int, heartbeat: Heartbeat, readiness: Readiness,
                 live_max_age_s: float = LIVE_MAX_AGE_S, max_connections: int = MAX_CONNECTIONS) -> None:
        self.heartbeat = heartbeat
        self.readiness = readiness
        self.live_max_age_s = live_max_age_s
        try:
            self.httpd = BoundedHTTPServer((bind, port), _handler(self), max_connections)
        except OSError as error:
            raise ProbePortUnavailable(f"cannot serve /livez, /readyz and /metrics on {bind}:{port}: "
                                       f"{error.strerror or error} (choose another port, or 0 for none)") from None
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="probes", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> ProbeServer:
        set_build_info()
        self._thread.start()
        log.info("probes and metrics on %s (/livez, /readyz, /metrics)", self.url)
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, path: str) -> tuple[int, bytes, str]:
        """(status, body, content type) for a GET of ``path``."""
        route = path.split("?", 1)[0]
        if route == "/metrics":
            body, content_type = exposition()
            return 200, body, content_type
        if route == "/livez":
            age = self.heartbeat.age()
            alive = age <= self.live_max_age_s
            return (200 if alive else 503), _json({"alive": alive, "heartbeat_age_s": round(age, 3)}), _JSON
        if route == "/readyz":
            ready, reasons = self.readiness.report()
            return (200 if ready else 503), _json({"ready": ready, "reasons": reasons}), _JSON
        return 404, _json({"error": "not found", "paths": ["/livez", "/readyz", "/metrics"]}), _JSON


_JSON = "application/json"


def _json(value: object) -> bytes:
    return orjson.dumps(value) + b"\n"


def _handler(server: ProbeServer) -> type[BaseHTTPRequestHandler]:
    class ProbeHandler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S

        def do_GET(self) -> None:
            status, body, content_type = server.answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return ProbeHandler


class Probes:
    """The heartbeat, the readiness conditions and the server of one component, started together."""

    def __init__(self, bind: str, port: int, live_max_age_s: float = LIVE_MAX_AGE_S) -> None:
        self.heartbeat = Heartbeat()
        self.readiness = Readiness()
        self.server = ProbeServer(bind, port, self.heartbeat, self.readiness, live_max_age_s) if port else None
        self._tasks: list[asyncio.Task[None]] = []
        self.stop = asyncio.Event()

    def start(self) -> Probes:
        set_build_info()
        if self.server is not None:
            self.server.start()
        return self

    def spawn(self, stop: asyncio.Event | None = None) -> None:
        """Start the heartbeat task on the running loop (call from inside it)."""
        self._tasks.append(asyncio.ensure_future(self.heartbeat.run(stop or self.stop)))

    def watch(self, name: str, check: Check, stop: asyncio.Event | None = None,
              interval: float = CHECK_INTERVAL_S) -> None:
        """Keep condition ``name`` up to date with ``check`` on the running loop."""
        self.readiness.declare(name)
        self._tasks.append(asyncio.ensure_future(
            watch_condition(self.readiness, name, check, stop or self.stop, interval)))

    async def aclose(self) -> None:
        """Stop the tasks and the server."""
        self.stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
