"""Run ``patchgate worker`` as a child process with a given environment (tests and the demo)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from processors.devservices.base import ManagedProcess
from processors.settings import Settings

SETTINGS_ENV = {
    "kafka_bootstrap": "PATCHGATE_KAFKA_BOOTSTRAP", "redis_url": "PATCHGATE_REDIS_URL",
    "topic_metadata": "PATCHGATE_TOPIC_METADATA", "topic_verdicts": "PATCHGATE_TOPIC_VERDICTS",
    "topic_notifications": "PATCHGATE_TOPIC_NOTIFICATIONS", "topic_deadletter": "PATCHGATE_TOPIC_DEADLETTER",
    "topic_commands": "PATCHGATE_TOPIC_COMMANDS", "metadata_partitions": "PATCHGATE_METADATA_PARTITIONS",
    "consumer_group": "PATCHGATE_CONSUMER_GROUP", "batch_max_messages": "PATCHGATE_BATCH_MAX_MESSAGES",
    "batch_max_wait_ms": "PATCHGATE_BATCH_MAX_WAIT_MS",
    "fetch_max_wait_ms": "PATCHGATE_FETCH_MAX_WAIT_MS", "session_timeout_ms": "PATCHGATE_SESSION_TIMEOUT_MS",
    "timer_interval_s": "PATCHGATE_TIMER_INTERVAL_S", "key_prefix": "PATCHGATE_KEY_PREFIX",
    "web_port": "PATCHGATE_WEB_PORT", "policy_file": "PATCHGATE_POLICY_FILE",
    "catalog_file": "PATCHGATE_CATALOG_FILE", "outbox_recovery_s": "PATCHGATE_OUTBOX_RECOVERY_S",
    "metrics_port": "PATCHGATE_METRICS_PORT", "metrics_bind": "PATCHGATE_METRICS_BIND",
}


def settings_environment(settings: Settings) -> dict[str, str]:
    env = {}
    for name, variable in SETTINGS_ENV.items():
        value = getattr(settings, name)
        if value is not None:
            env[variable] = str(value)
    return env


def patchgate_executable() -> list[str]:
    found = Path(sys.executable).parent / "patchgate"
    if found.exists():
        return [str(found)]
    located = shutil.which("patchgate")
    return [located] if located else [sys.executable, "-m", "processors.cli"]


class WorkerProcess(ManagedProcess):
    def __init__(self, settings: Settings, *, clock: str = "redis", name: str = "worker",
                 extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, **settings_environment(settings), "PATCHGATE_CLOCK": clock, **(extra_env or {})}
        super().__init__(name, [*patchgate_executable(), "worker", "--loglevel", "info"], env=env)
