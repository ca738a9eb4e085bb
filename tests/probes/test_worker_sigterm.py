"""SIGTERM stops the worker gracefully: it exits 0 (not killed at the deadline) and has committed
the offsets of everything it finished, so a successor starts after it (the group's lag is 0).

The signal comes right after the last record was processed (its progress mark is in Redis), before
the next periodic commit would have been due.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import orjson
import pytest

from processors.devservices.worker_process import WorkerProcess
from processors.kafka.lag import ConsumerLag
from tests.worker.factories import metadata_event
from tests.worker.harness import isolated_settings
from tests.worker.test_failures import T0, processed, produce, wait_for

pytestmark = pytest.mark.integration


def test_sigterm_commits_what_the_worker_finished(kafka_bootstrap: str, redis_url: str,
                                                  unique_name: Callable[[str], str]) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name, metadata_partitions=4)
    worker = WorkerProcess(settings)
    worker.start()
    try:
        placed: list[tuple[int, int]] = []
        for i in range(8):  # one produce call each: Tansu reports a partition's end per batch
            placed += produce(settings, [(f"contoso/ex{i}.contoso.com".encode(), orjson.dumps(metadata_event(
                f"s-{i}", T0 + timedelta(minutes=i), server=f"ex{i}.contoso.com")))])
        wait_for(processed(settings, placed), "every record processed", 120)
        worker.stop(timeout=30)
        assert worker.process is not None and worker.process.returncode == 0, worker.log_tail(30)
    finally:
        worker.stop()
    lag = ConsumerLag(settings.kafka, settings.consumer_group, settings.topic_metadata).measure()
    assert lag == {partition: 0 for partition in range(4)}, lag
