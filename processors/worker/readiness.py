"""The worker's liveness and readiness (``/livez``, ``/readyz`` of :mod:`processors.probes`).

Faust's event loop beats the heartbeat every second (a Faust timer), and another timer checks, in
turn, the readiness conditions:

- ``redis``: the state store answers a ping;
- ``kafka``: the brokers answer a metadata request of the worker's producer (the one that publishes
  verdicts);
- ``partitions``: the group consumer holds at least one partition (a worker without partitions
  processes nothing: more workers than partitions, or a rebalance that has not finished);
- ``outbox``: no outbox claim older than ``PATCHGATE_OUTBOX_STUCK_S`` (verdicts committed in Redis
  but not acknowledged by the broker for that long: publishing is stuck). The check also refreshes
  ``patchgate_outbox_claims`` and ``patchgate_outbox_claim_age_seconds``.

Until the runtime has started (Redis scripts loaded, policy read) every condition reports so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import faust

from processors.probes import BEAT_INTERVAL_S, CHECK_INTERVAL_S, Check, Probes, kafka_check, redis_check, run_check
from processors.settings import Settings
from processors.worker.outbox_backlog import export_outbox_backlog

CONDITIONS = ("redis", "kafka", "partitions", "outbox")


def worker_checks(app: faust.App, holder: Mapping[str, Any], settings: Settings) -> dict[str, Check]:
    """The worker's readiness checks; ``holder`` has ``store`` and ``runtime`` once started."""

    async def redis() -> str | None:
        return await redis_check(holder["store"])() if "store" in holder else "the worker has not started"

    async def kafka() -> str | None:
        if "runtime" not in holder:
            return "the worker has not started"
        return await kafka_check(holder["runtime"].output.producer)()

    async def partitions() -> str | None:
        assigned = app.consumer.assignment() if app.consumer is not None else set()
        return None if assigned else "no partition assigned to this worker (yet)"

    async def outbox() -> str | None:
        if "store" not in holder:
            return "the worker has not started"
        claims, oldest = await export_outbox_backlog(holder["store"], time.time())
        if oldest > settings.outbox_stuck_s:
            return f"{claims} outbox claim(s) unacknowledged, the oldest for {oldest:.0f} s"
        return None

    return {"redis": redis, "kafka": kafka, "partitions": partitions, "outbox": outbox}


def install_worker_probes(app: faust.App, holder: Mapping[str, Any], settings: Settings) -> Probes:
    """Serve the probes on the metrics address and keep them current from Faust's loop."""
    probes = Probes(settings.metrics_bind, settings.metrics_port)
    for name in CONDITIONS:
        probes.readiness.declare(name)
    checks = worker_checks(app, holder, settings)

    @app.timer(BEAT_INTERVAL_S)
    async def heartbeat() -> None:
        probes.heartbeat.beat()

    @app.timer(CHECK_INTERVAL_S)
    async def readiness() -> None:
        for name, check in checks.items():
            probes.readiness.set(name, await run_check(check))

    return probes.start()
