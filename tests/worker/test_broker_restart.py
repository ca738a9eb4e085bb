"""A broker restart: the worker resumes from its committed offsets and loses nothing.

Runs on its own Apache Kafka broker whatever PATCHGATE_TEST_KAFKA says: Tansu keeps nothing across
a restart, so only a broker with a log can show a resume from committed offsets.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import orjson
import pytest
import redis

from processors.devservices.apache_kafka import ApacheKafkaBroker
from processors.devservices.worker_process import WorkerProcess
from processors.state.keys import KeySchema
from tests.worker.factories import metadata_event
from tests.worker.harness import isolated_settings, read_topic
from tests.worker.test_failures import T0, processed, produce, wait_for

pytestmark = pytest.mark.integration


def test_worker_resumes_after_a_broker_restart(own_apache_broker: ApacheKafkaBroker, redis_url: str,
                                               unique_name: Callable[[str], str]) -> None:
    settings = isolated_settings(own_apache_broker.bootstrap, redis_url, unique_name)
    worker = WorkerProcess(settings)
    worker.start()
    try:
        def send(round_: int) -> list[tuple[int, int]]:
            return produce(settings, [(f"contoso/ex{i}.contoso.com".encode(), orjson.dumps(metadata_event(
                f"r{round_}-{i}", T0 + timedelta(minutes=round_), server=f"ex{i}.contoso.com"))) for i in range(20)])

        wait_for(processed(settings, send(1)), "the first round", 120)
        own_apache_broker.restart()
        # rejoining after a restart (metadata refresh, coordinator, group join) took minutes on a loaded
        # 2-core machine, seconds on a quiet one: the deadline is for a worker that never resumes
        wait_for(processed(settings, send(2)), "the round after the restart", 300)

        client = redis.Redis.from_url(redis_url)
        keys = KeySchema(settings.key_prefix)
        counts = [client.pfcount(keys.server_day_hll(f"contoso/ex{i}.contoso.com", T0.date().isoformat()))
                  for i in range(20)]
        assert counts == [2] * 20
        verdicts = [v for _, v in read_topic(own_apache_broker.bootstrap, settings.topic_verdicts)]
        assert sorted(v["server_key"] for v in verdicts) == sorted(f"contoso/ex{i}.contoso.com" for i in range(20))
        assert {v["sequence"] for v in verdicts} == {1}  # one detection each, none published twice
    finally:
        worker.stop()
