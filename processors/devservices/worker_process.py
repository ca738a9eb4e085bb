"""Run ``patchgate worker`` as a child process with a given environment (tests and the demo)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from processors.devservices.base import ManagedProcess
from processors.settings import Settings


def patchgate_executable() -> list[str]:
    found = Path(sys.executable).parent / "patchgate"
    if found.exists():
        return [str(found)]
    located = shutil.which("patchgate")
    return [located] if located else [sys.executable, "-m", "processors.cli"]


class WorkerProcess(ManagedProcess):
    def __init__(self, settings: Settings, *, clock: str = "redis", name: str = "worker",
                 extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, **settings.to_env(), "PATCHGATE_CLOCK": clock, **(extra_env or {})}
        super().__init__(name, [*patchgate_executable(), "worker", "--loglevel", "info"], env=env)
