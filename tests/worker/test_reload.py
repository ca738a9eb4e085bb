"""A new build catalog is picked up by the running worker, which re-evaluates its servers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import orjson
import pytest

from processors.devservices.worker_process import WorkerProcess
from processors.replay.driver import ReplayDriver
from tests.worker.factories import metadata_event
from tests.worker.harness import isolated_settings, read_topic

pytestmark = pytest.mark.integration
NEW_SU = ("Exchange Server SE,Exchange Server SE RTM Oct26SU,15.2.2562.60,15.02.2562.060,2026-10-13,SU,RTM,"
          "KB0000000; test row\n")


def test_new_catalog_is_loaded_without_restart_and_servers_are_reevaluated(
        tmp_path: Path, kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> None:
    data = resources.files("processors").joinpath("data")
    catalog = tmp_path / "exchange-builds.csv"
    catalog.write_bytes(data.joinpath("exchange-builds.csv").read_bytes())
    (tmp_path / "exchange-lifecycle.csv").write_bytes(data.joinpath("exchange-lifecycle.csv").read_bytes())
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name, catalog_file=catalog)
    worker = WorkerProcess(settings)
    worker.start()
    driver = ReplayDriver(settings, step_timeout=90)
    try:
        at = datetime(2026, 11, 20, 10, tzinfo=UTC)
        driver.set_clock(at.timestamp())
        event = metadata_event("se-1", at, server="se.contoso.com", build="15.2.2562.53")
        driver.send([(settings.topic_metadata, b"contoso/se.contoso.com", orjson.dumps(event))])
        assert read_topic(kafka_bootstrap, settings.topic_verdicts) == []  # the newest SU: current
        driver.set_clock(at.timestamp() + 3600)  # an hour later, no further mail from the server

        # a newer SU (released 38 days before the clock) arrives in the catalog file
        replacement = tmp_path / "exchange-builds.csv.new"
        replacement.write_bytes(catalog.read_bytes() + NEW_SU.encode())
        os.replace(replacement, catalog)

        deadline = time.monotonic() + 60
        verdicts: list[dict[str, object]] = []
        while not verdicts:
            assert time.monotonic() < deadline, f"no re-evaluation after the catalog change:\n{worker.log_tail()}"
            time.sleep(0.2)  # polling the topic
            verdicts = [v for _, v in read_topic(kafka_bootstrap, settings.topic_verdicts)]
        assert verdicts[0]["server_key"] == "contoso/se.contoso.com"
        assert (verdicts[0]["status"], verdicts[0]["rule"], verdicts[0]["stage"]) == ("behind", "grace_period", 1)
        assert {"short": "15.2.2562.60", "long": "15.02.2562.060",
                "name": "Exchange Server SE RTM Oct26SU"} in verdicts[0]["recommended_builds"]  # type: ignore[operator]
    finally:
        driver.close()
        worker.stop()
