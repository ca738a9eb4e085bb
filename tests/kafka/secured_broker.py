"""An Apache Kafka with one secured client listener (SASL_SSL or SSL) next to the PLAINTEXT one the
test itself uses to set the broker up (users, topics), served with a certificate from a test CA."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from edge.publisher import MetadataPublisher
from edge.settings import EdgeSettings
from edge.verdict_cache import VerdictCache
from processors.devservices.apache_kafka import ApacheKafkaBroker
from processors.devservices.base import free_port
from processors.devservices.worker_process import WorkerProcess, patchgate_executable
from processors.kafka.config import KafkaConfig
from tests.kafka.tls import TlsFiles
from tests.worker.factories import metadata_event
from tests.worker.harness import isolated_settings, read_topic
from tests.worker.test_failures import T0


class SecuredListenerBroker(ApacheKafkaBroker):
    """``protocol`` (``SASL_SSL`` or ``SSL``) on ``secured_bootstrap``; ``listener_properties`` are set
    for that listener only (``listener.name.<protocol>.`` is prefixed)."""

    def __init__(self, tls: TlsFiles, protocol: str, listener_properties: dict[str, str]) -> None:
        super().__init__(partitions=4)
        self.tls = tls
        self.protocol = protocol
        self.secured_port = free_port()
        self.secured_bootstrap = f"127.0.0.1:{self.secured_port}"
        self.listener_properties = listener_properties

    def server_properties(self, log_dir: Path) -> str:
        name = self.protocol
        prefix = f"listener.name.{name.lower()}."
        extra = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},{name}://127.0.0.1:{self.secured_port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},{name}://127.0.0.1:{self.secured_port}",
            "listener.security.protocol.map": f"PLAINTEXT:PLAINTEXT,{name}:{name},CONTROLLER:PLAINTEXT",
            f"{prefix}ssl.keystore.type": "PEM",
            f"{prefix}ssl.keystore.location": str(self.tls.server_keystore),
            **{prefix + key: value for key, value in self.listener_properties.items()},
        }
        return super().server_properties(log_dir) + "".join(f"{key}={value}\n" for key, value in extra.items())


def assert_metadata_becomes_a_verdict_at_the_edge(broker: SecuredListenerBroker, worker_file: Path, edge_file: Path,
                                                   redis_url: str, unique_name: Callable[[str], str]) -> None:
    """Worker and edge on the secured listener only, each from its client properties file: a metadata
    record the edge publishes becomes a verdict the edge's cache holds and its principal can read."""
    settings = isolated_settings("", redis_url, unique_name, kafka_config=worker_file, metadata_partitions=4)
    assert settings.kafka_bootstrap == broker.secured_bootstrap  # from the file
    edge = EdgeSettings.from_env({"PATCHGATE_KAFKA_CONFIG": str(edge_file),
                                  "PATCHGATE_TOPIC_METADATA": settings.topic_metadata,
                                  "PATCHGATE_TOPIC_VERDICTS": settings.topic_verdicts})
    worker = WorkerProcess(settings)
    worker.start()
    cache = VerdictCache(edge.kafka, topic=edge.topic_verdicts)
    publisher = MetadataPublisher(edge.kafka, topic=edge.topic_metadata)
    cache.start()
    publisher.start()
    try:
        assert cache.wait_caught_up(60)
        assert publisher.publish("contoso/ex01.contoso.com", metadata_event(f"{broker.protocol}-1", T0))
        assert publisher.flush(30) == 0
        assert cache.wait_until(lambda: len(cache) == 1, 120), worker.log_tail()
        assert [v["server_key"] for v in cache.snapshot()] == ["contoso/ex01.contoso.com"]
        assert publisher.metrics.records_delivered == 1
        # the edge principal reads what the worker principal wrote; no client needed PLAINTEXT
        assert [key for key, _ in read_topic(edge.kafka, settings.topic_verdicts)] == [b"contoso/ex01.contoso.com"]
    finally:
        publisher.stop(5.0)
        cache.stop()
        worker.stop()


def edge_refused_at_start(broker: SecuredListenerBroker, client_file: Path) -> str:
    """Run ``patchgate edge cache-dump`` with ``client_file``; assert it ends at once with exit 2 and
    one line naming the broker and the file (not failing open after the catch-up timeout); its stderr."""
    env = {"PATCHGATE_KAFKA_CONFIG": str(client_file), "PATH": "/usr/bin:/bin"}
    began = time.monotonic()
    done = subprocess.run([*patchgate_executable(), "edge", "cache-dump", "--catchup-timeout", "60"], env=env,
                          capture_output=True, timeout=120, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert time.monotonic() - began < 50
    assert f"edge: Kafka at {broker.secured_bootstrap} refused the client (configuration {client_file})" in stderr
    assert "Traceback" not in stderr
    return stderr


def assert_pause_command_goes_through(broker: SecuredListenerBroker, client_file: Path) -> None:
    """``patchgate pause`` with ``client_file`` writes its command to a fresh commands topic (read back
    over the broker's plain listener)."""
    topic = f"commands.cli-{time.monotonic_ns()}"
    env = {"PATCHGATE_KAFKA_CONFIG": str(client_file), "PATCHGATE_TOPIC_COMMANDS": topic, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([*patchgate_executable(), "pause", "--tenant", "contoso", "--days", "3"], env=env,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    records = read_topic(KafkaConfig(broker.bootstrap), topic)
    assert [(key, value["action"], value["days"]) for key, value in records] == [(b"contoso", "pause_create", 3)]


def worker_refused_at_start(client_file: Path, redis_url: str, within_s: float = 60) -> str:
    """Run ``patchgate worker`` with ``client_file``; assert it ends with exit 2 within ``within_s``
    (refused at once, not after retrying until a timeout) and without a traceback; its stderr."""
    env = {"PATCHGATE_KAFKA_CONFIG": str(client_file), "PATCHGATE_REDIS_URL": redis_url, "PATCHGATE_WEB_PORT": "0",
           "PATCHGATE_METRICS_PORT": "0", "PATH": "/usr/bin:/bin"}
    began = time.monotonic()
    done = subprocess.run([*patchgate_executable(), "worker"], env=env, capture_output=True, timeout=120, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert time.monotonic() - began < within_s
    assert "Traceback" not in stderr
    return stderr
