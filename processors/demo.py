"""``patchgate demo`` (``make demo``): the whole pipeline on this machine, on embedded services.

Starts the Tansu broker and a Redis server on free loopback ports, one ``patchgate worker``, the
edge milter (following the verdicts, listening on a Unix socket a Postfix could use), and the HTTP
API with the report page; replays the shipped 120-day traffic sample
(:mod:`processors.replay.sample`) at accelerated event time with a progress bar; then prints each
tenant's report table and the report page's URL, and keeps everything running until Ctrl-C, which
stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

from processors.devservices.base import ManagedProcess, free_port, tcp_answers
from processors.devservices.redis_server import RedisServer
from processors.devservices.tansu import TansuBroker
from processors.devservices.worker_process import WorkerProcess, patchgate_executable
from processors.kafka.topics import ensure_topics
from processors.replay.driver import ReplayDriver
from processors.replay.sample import SERVERS, Step, steps
from processors.settings import Settings

EDGE_CONFIG = """\
[edge]
name = "demo-edge"

[[connector]]
id = "demo-onprem"
tenant_id = "contoso"
type = "OnPremises"
client_ips = ["127.0.0.0/8"]
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser("demo", help="run the whole pipeline on embedded services with a 120-day sample")
    demo.add_argument("--api-port", type=int, default=8080, help="port of the report page/API (0 = any free port)")
    demo.add_argument("--no-wait", action="store_true", help="stop after printing the report (for scripts)")
    demo.set_defaults(handler=run_demo)


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


def run_demo(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="patchgate-demo-"))
    started: list[object] = []
    broker, store = TansuBroker(), RedisServer()
    interrupted = False

    def stop_all(*_: object) -> None:
        for service in reversed(started):
            with contextlib.suppress(Exception):
                service.stop()  # type: ignore[attr-defined]

    try:
        print("patchgate demo: starting the embedded Kafka-protocol broker (Tansu) and Redis ...", flush=True)
        broker.start()
        started.append(broker)
        store.start()
        started.append(store)
        settings = Settings.from_env({}, kafka_bootstrap=broker.bootstrap, redis_url=store.url,
                                     session_timeout_ms=6000, timer_interval_s=0.1, batch_max_wait_ms=20,
                                     web_port=0, metrics_port=0)
        ensure_topics(settings)
        print(f"  broker {broker.bootstrap}, redis {store.url}")

        worker = WorkerProcess(settings, clock="redis")
        worker.start()
        started.append(worker)
        print(f"  worker pid {worker.pid} (log {worker.log_path})")

        edge_config = workdir / "edge.toml"
        edge_config.write_text(EDGE_CONFIG)
        milter_socket = workdir / "milter.sock"
        edge = ManagedProcess("edge", [*patchgate_executable(), "edge", "milter", "--config", str(edge_config),
                                       "--listen", f"unix:{milter_socket}"],
                              env={**os.environ, "PATCHGATE_KAFKA_BOOTSTRAP": broker.bootstrap,
                                   "PATCHGATE_TOPIC_VERDICTS": settings.topic_verdicts,
                                   "PATCHGATE_TOPIC_METADATA": settings.topic_metadata})
        edge.start()
        started.append(edge)
        print(f"  edge milter on unix:{milter_socket} "
              f"(Postfix: smtpd_milters = {{ unix:{milter_socket}, default_action=accept }})")

        token = secrets.token_urlsafe(24)
        api_port = args.api_port or free_port()
        api = ManagedProcess("api", [*patchgate_executable(), "api"],
                             env={**os.environ, **settings.to_env(), "PATCHGATE_API_PORT": str(api_port),
                                  "PATCHGATE_API_BIND": "127.0.0.1", "PATCHGATE_API_TOKENS": f"{token}=*"})
        api.start()
        started.append(api)
        api.wait_ready(lambda: tcp_answers("127.0.0.1", api_port), 30)

        print("\nReplaying 120 days of traffic from 10 servers of 3 tenants (event time, accelerated):")
        all_steps = steps()
        driver = ReplayDriver(settings, step_timeout=120, on_step=ProgressBar(len(all_steps)))
        driver.run(all_steps)
        driver.close()
        print("\n")

        from processors.report.cli import render_report

        for tenant in sorted({server.tenant for server in SERVERS}):
            text = asyncio.run(render_report(settings.redis_url, settings.key_prefix, None, tenant, "table",
                                             sys.stdout.isatty(), now=all_steps[-1].at))
            print(text)
        url = f"http://127.0.0.1:{api_port}/?token={token}"
        print(f"Report page (operator overview): {url}")
        print(f"Tenant page: http://127.0.0.1:{api_port}/tenants/contoso?token={token}")
        if args.no_wait:
            return 0
        print("\nEverything keeps running; press Ctrl-C to stop it all.")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        interrupted = True
        return 0
    finally:
        if interrupted:
            print("\nstopping ...")
        stop_all()
