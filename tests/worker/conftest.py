"""Fixtures of the worker tests: settings isolated per test, and a real worker process on them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from processors.devservices.worker_process import WorkerProcess
from processors.settings import Settings
from tests.worker.harness import isolated_settings


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> Settings:
    return isolated_settings(kafka_bootstrap, redis_url, unique_name)


@pytest.fixture
def worker(settings: Settings) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings)
    process.start()
    yield process
    process.stop()
