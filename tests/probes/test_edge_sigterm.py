"""SIGTERM drains the edge: the metadata records still buffered are on the topic after exit.

A real ``patchgate edge milter`` process (its own Tansu broker, Unix socket, probes on a free port)
takes a burst of milter sessions while the broker is stopped, so that every record is held by the
publisher (its /metrics say so: accepted, none delivered). The broker comes back (Tansu keeps nothing:
the topics are created again) and the edge is sent SIGTERM at once: it exits 0 within its flush
deadline and every record is on the metadata topic. Its JSON log lines parse, and /readyz answered
200 once the verdict cache had caught up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edge.milter.driver import MilterDriver
from processors.devservices.base import free_port
from processors.devservices.tansu import TansuBroker
from tests.edge.helpers import exchange_headers
from tests.edge.kafka_helpers import create_topic, read_all
from tests.probes.conftest import probe, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SESSIONS = 300
CONFIG = """
[edge]
name = "edge-sigterm"

[[connector]]
id = "contoso-onprem"
tenant_id = "contoso"
type = "OnPremises"
client_ips = ["127.0.0.1/32"]
"""


async def burst(sock: Path, count: int) -> None:
    driver = await MilterDriver.unix(str(sock))
    await driver.negotiate()
    for index in range(count):
        reply = await driver.message(ip="127.0.0.1", queue_id=f"Q{index:05d}",
                                     headers=exchange_headers(by=f"EX{index % 7:02d}.contoso.com"))
        assert reply[0] in (b"c", b"a"), reply  # continue / accept: no verdict for these servers
        await driver.abort()
    await driver.quit()


def records_on(bootstrap: str, topic: str) -> list[dict[str, object]]:
    def count(got: list[tuple[object, object]]) -> bool:
        return sum(len(orjson.loads(value)["records"]) for _, value in got if isinstance(value, bytes)) >= SESSIONS

    envelopes = read_all(bootstrap, topic, until=count, timeout=30)
    return [record for _, value in envelopes if isinstance(value, bytes) for record in orjson.loads(value)["records"]]


def publisher_counter(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    label = f'patchgate_edge_events_total{{component="publisher",counter="{name}"}} '
    return float(next(line for line in text.splitlines() if line.startswith(label)).split()[-1])


def test_sigterm_flushes_the_buffered_metadata(own_broker: TansuBroker, unique_name: Callable[[str], str],
                                               tmp_path: Path) -> None:
    kafka_bootstrap = own_broker.bootstrap
    verdicts, metadata = unique_name("verdicts"), unique_name("metadata")

    def create_topics() -> None:
        create_topic(kafka_bootstrap, verdicts, partitions=2, compact=True)
        create_topic(kafka_bootstrap, metadata, partitions=2)

    create_topics()
    config = tmp_path / "edge.toml"
    config.write_text(CONFIG)
    sock, port = tmp_path / "milter.sock", free_port()
    log = tmp_path / "edge.log"
    edge = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "edge", "milter", "--config", str(config), "--listen", f"unix:{sock}",
         "--bootstrap", kafka_bootstrap, "--verdicts-topic", verdicts, "--metadata-topic", metadata,
         "--catchup-timeout", "20", "--metrics-interval", "3600", "--metrics-port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("wb"), text=True,
        env={**os.environ, "PATCHGATE_LOG_FORMAT": "json"})
    try:
        assert edge.stdout is not None
        ready = edge.stdout.readline()  # the ready line, or EOF when the edge failed to start
        assert "ready" in ready, log.read_text()
        wait_until(lambda: probe(f"http://127.0.0.1:{port}/readyz") == (200, {"ready": True, "reasons": {}}),
                   "the edge ready", 30)
        own_broker.stop()
        asyncio.run(burst(sock, SESSIONS))
        assert publisher_counter(port, "records_accepted") == SESSIONS
        assert publisher_counter(port, "records_delivered") == 0  # all of them held by the publisher
        own_broker.start()
        create_topics()
        os.kill(edge.pid, signal.SIGTERM)
        assert edge.wait(15) == 0, log.read_text()
    finally:
        if edge.poll() is None:
            edge.kill()
            edge.wait(10)
    records = records_on(kafka_bootstrap, metadata)
    assert sorted(str(record["event_id"]) for record in records) == [f"edge-sigterm:Q{i:05d}" for i in range(SESSIONS)]
    entries = [orjson.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert entries and {entry["component"] for entry in entries} == {"edge-milter"}
    assert not any("undelivered" in str(entry["message"]) for entry in entries)
