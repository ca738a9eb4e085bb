"""``patchgate demo`` (``make demo``): the whole pipeline on this machine, on embedded services.

Starts the Tansu broker and a Redis server on free loopback ports (or uses the Redis of
``PATCHGATE_REDIS_URL``, under a key prefix of its own that is deleted at the end), one
``patchgate worker``, the edge milter (following the verdicts, listening on a Unix socket a Postfix
could use), and the HTTP API with the report page; replays the shipped 120-day traffic sample
(:mod:`processors.replay.sample`) at accelerated event time with a progress bar; then prints each
tenant's report table and the report page's URL, and keeps everything running until Ctrl-C or
SIGTERM (exit 0), or stops at once with ``--no-wait``.

Whatever happens, it stops every process it started and deletes every temporary folder it made
(its own, the services' logs and data). A start-up failure (a port in use, a missing embedded
service, a service that dies) is one line on stderr, ``patchgate demo: ...``, and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from processors.devservices.base import ManagedProcess, free_port
from processors.devservices.redis_server import RedisServer
from processors.devservices.tansu import TansuBroker
from processors.devservices.worker_process import WorkerProcess, patchgate_executable
from processors.errors import PatchgateError
from processors.kafka.topics import ensure_topics
from processors.replay.driver import ReplayDriver
from processors.replay.sample import SERVERS, Step, steps
from processors.settings import Settings
from processors.state.urls import redacted

EDGE_CONFIG = """\
[edge]
name = "demo-edge"

[[connector]]
id = "demo-onprem"
tenant_id = "contoso"
type = "OnPremises"
client_ips = ["127.0.0.0/8"]
"""

EXTERNAL_REDIS_ENV = "PATCHGATE_REDIS_URL"
READY_TIMEOUT_S = 30.0
WATCH_INTERVAL_S = 1.0  # how often the waiting demo checks that its processes still run
CLEANUP_SCAN_COUNT = 500  # keys per SCAN when the demo's keys are deleted from an external Redis
UNIX_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on the BSDs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser("demo", help="run the whole pipeline on embedded services with a 120-day sample")
    demo.add_argument("--api-port", type=int, default=0,
                      help="port of the report page/API on 127.0.0.1 (default 0: any free port)")
    demo.add_argument("--no-wait", action="store_true", help="stop after printing the report (for scripts)")
    demo.set_defaults(handler=run_demo)


class DemoError(PatchgateError):
    """A start-up failure the user can fix; the message is one line saying how."""


class ProgressBar:
    def __init__(self, total: int, width: int = 40) -> None:
        self.total = total
        self.width = width
        self.started = time.monotonic()
        self.tty = sys.stdout.isatty()

    def __call__(self, index: int, total: int, step: Step) -> None:
        done = index + 1
        if not self.tty and done not in (1, total) and done % 20:
            return
        filled = int(self.width * done / total)
        line = (f"\r  replaying [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
                f"{step.at:%Y-%m-%d %H:%M} ({time.monotonic() - self.started:.0f}s)")
        sys.stdout.write(line if self.tty else line.lstrip("\r") + "\n")
        sys.stdout.flush()


# ------------------------------------------------------------------------------------------ checks

def claim_api_port(requested: int) -> int:
    """``requested`` if it can be bound on 127.0.0.1 now (a free one for 0); DemoError otherwise."""
    if not 0 <= requested <= 65535:
        raise DemoError(f"--api-port {requested} is not a port (0..65535; 0 = any free port)")
    if requested == 0:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the API's own listener does
        try:
            probe.bind(("127.0.0.1", requested))
        except OSError as error:
            reason = "is already in use" if error.errno == errno.EADDRINUSE else f"cannot be bound ({error})"
            raise DemoError(f"port {requested} {reason}: choose another with --api-port N "
                            "(make demo PORT=N), or 0 for any free port") from None
    return requested


def _status(port: int, token: str) -> int | None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/tenants",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=1.0) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def api_answers(port: int, token: str) -> bool:
    """True when the listener on ``port`` accepts our token and refuses another one: our API process,
    never someone else's server that happens to answer on that port."""
    return _status(port, token) == 200 and _status(port, secrets.token_urlsafe(24)) == 401


def unix_socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def one_line(error: BaseException) -> str:
    """An exception as one line: its first line, plus the last line of a service log if it quotes one."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if len(lines) == 1:
        return lines[0]
    return f"{lines[0].rstrip(':')} (last log line: {lines[-1]})"


# ---------------------------------------------------------------------------------------- the run

class DemoRun:
    """Everything one demo run started, in start order, so that :meth:`close` can undo it all."""

    def __init__(self, api_port: int) -> None:
        self.api_port = api_port
        self.token = secrets.token_urlsafe(24)
        self.workdir = Path(tempfile.mkdtemp(prefix="patchgate-demo-"))
        self.closers: list[Callable[[], None]] = [lambda: shutil.rmtree(self.workdir, ignore_errors=True)]
        self.processes: list[ManagedProcess] = []
        self.settings: Settings | None = None

    def close(self) -> None:
        for closer in reversed(self.closers):
            with contextlib.suppress(Exception):
                closer()
        self.closers.clear()

    def _own(self, process: ManagedProcess) -> ManagedProcess:
        self.closers.append(process.close)
        self.processes.append(process)
        return process

    def start_services(self) -> Settings:
        print("patchgate demo: starting the embedded Kafka-protocol broker (Tansu) and Redis ...", flush=True)
        broker = TansuBroker()
        self.closers.append(broker.close)
        broker.start()
        redis_url, key_prefix = self._redis()
        self.settings = Settings.from_env({}, kafka_bootstrap=broker.bootstrap, redis_url=redis_url,
                                          key_prefix=key_prefix, data_dir=self.workdir / "worker-data",
                                          session_timeout_ms=6000, timer_interval_s=0.1, batch_max_wait_ms=20,
                                          web_port=0, metrics_port=0)
        ensure_topics(self.settings)
        print(f"  broker {broker.bootstrap}, redis {redacted(redis_url)}")  # an external URL may hold a password
        return self.settings

    def _redis(self) -> tuple[str, str]:
        external = os.environ.get(EXTERNAL_REDIS_ENV)
        if external:
            key_prefix = f"patchgate-demo-{secrets.token_hex(4)}"
            self.closers.append(lambda: delete_keys(external, key_prefix))
            return external, key_prefix
        store = RedisServer()
        self.closers.append(store.close)
        store.start()
        return store.url, "pg"

    def start_processes(self, settings: Settings) -> None:
        worker = self._own(WorkerProcess(settings, clock="redis"))
        worker.start()
        print(f"  worker pid {worker.pid}")
        (self.workdir / "edge.toml").write_text(EDGE_CONFIG)
        socket_path = self._socket_dir() / "milter.sock"
        edge = self._own(ManagedProcess(
            "edge", [*patchgate_executable(), "edge", "milter", "--config", str(self.workdir / "edge.toml"),
                     "--listen", f"unix:{socket_path}"],
            env={**os.environ, "PATCHGATE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                 "PATCHGATE_TOPIC_VERDICTS": settings.topic_verdicts,
                 "PATCHGATE_TOPIC_METADATA": settings.topic_metadata,
                 "PATCHGATE_METADATA_TOPIC_MODE": settings.metadata_topic_mode}))  # the worker's, not the shell's
        edge.start()
        edge.wait_ready(lambda: unix_socket_answers(socket_path), READY_TIMEOUT_S)
        print(f"  edge milter on unix:{socket_path} (mode 0660, private to this demo; to serve a Postfix, "
              "run `patchgate edge milter --socket-group postfix` in a folder Postfix can reach: edge/README.md)")
        api = self._own(ManagedProcess(
            "api", [*patchgate_executable(), "api"],
            env={**os.environ, **settings.to_env(), "PATCHGATE_API_PORT": str(self.api_port),
                 "PATCHGATE_API_BIND": "127.0.0.1", "PATCHGATE_API_TOKENS": f"{self.token}=*",
                 "PATCHGATE_API_PROBE_PORT": "0"}))  # no fixed probe port: the demo must run beside anything
        api.start()
        api.wait_ready(lambda: api_answers(self.api_port, self.token), READY_TIMEOUT_S)

    def _socket_dir(self) -> Path:
        """The work folder, or a short one under /tmp when a socket path in it would be too long."""
        if len(bytes(self.workdir / "milter.sock")) <= UNIX_PATH_MAX:
            return self.workdir
        short = Path(tempfile.mkdtemp(prefix="patchgate-demo-", dir="/tmp"))
        self.closers.append(lambda: shutil.rmtree(short, ignore_errors=True))
        return short

    def replay_and_report(self, settings: Settings) -> None:
        tenants = {server.tenant for server in SERVERS}
        print(f"\nReplaying 120 days of traffic from {len(SERVERS)} servers of {len(tenants)} tenants "
              "(event time, accelerated):")
        all_steps = steps()
        driver = ReplayDriver(settings, step_timeout=120, on_step=ProgressBar(len(all_steps)))
        try:
            driver.run(all_steps)
        finally:
            driver.close()
            del driver  # its Kafka producer goes now: no librdkafka lines on the console later
        print("\n")
        from processors.report.cli import render_report

        for tenant in sorted(tenants):
            text = asyncio.run(render_report(settings.redis_url, settings.key_prefix, None, tenant, "table",
                                             sys.stdout.isatty(), now=all_steps[-1].at))
            print(text)
        print(f"Report page (operator overview): http://127.0.0.1:{self.api_port}/?token={self.token}")
        print(f"Tenant page: http://127.0.0.1:{self.api_port}/tenants/contoso?token={self.token}")
        print(f"Tenant JSON: curl -H 'Authorization: Bearer {self.token}' "
              f"http://127.0.0.1:{self.api_port}/v1/tenants/contoso/servers", flush=True)

    def watch(self) -> None:
        """Return never; raise DemoError as soon as one of the demo's processes has exited."""
        while True:
            for process in self.processes:
                code = process.process.poll() if process.process else None
                if code is not None:
                    raise DemoError(f"the {process.name} process exited with code {code}: "
                                    f"{process.log_tail(1) or 'no output'}")
            time.sleep(WATCH_INTERVAL_S)


def delete_keys(redis_url: str, key_prefix: str) -> None:
    """Delete the demo's keys from an external Redis (SCAN in bounded pages, never KEYS)."""
    from processors.state.keys import KeySchema
    from processors.state.store import ScenarioControl

    state = ScenarioControl(redis_url, KeySchema(key_prefix))
    try:
        state.delete_all(CLEANUP_SCAN_COUNT)
    finally:
        state.close()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(args: argparse.Namespace) -> int:
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    run: DemoRun | None = None
    try:
        run = DemoRun(claim_api_port(args.api_port))
        settings = run.start_services()
        run.start_processes(settings)
        run.replay_and_report(settings)
        if args.no_wait:
            return 0
        print("\nEverything keeps running; press Ctrl-C to stop it all.", flush=True)
        run.watch()
        return 0  # pragma: no cover (watch returns only by raising)
    except KeyboardInterrupt:
        print("\npatchgate demo: stopping ...", flush=True)
        return 0
    except Exception as error:  # a start-up failure of any service: one line, never a traceback
        print(f"patchgate demo: {one_line(error)}", file=sys.stderr, flush=True)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        if run is not None:
            run.close()
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, signal.default_int_handler)
