"""patchgate through a Kafka whose client listener is SASL_SSL, configured by client properties files.

A real Apache Kafka with a TLS certificate from a CA made for the test: the worker (Faust and its
librdkafka clients) authenticates with SCRAM-SHA-512, the edge's publisher and verdict follower with
SASL/PLAIN; an edge record becomes a verdict the edge follows. A wrong password ends the worker at
start-up with one clear message that does not quote it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from processors.devservices.worker_process import patchgate_executable
from processors.kafka import clients
from processors.kafka.clients import KafkaUnreachable, check_connection
from processors.kafka.config import KafkaConfig
from tests.kafka.secured_broker import (
    SecuredListenerBroker,
    assert_metadata_becomes_a_verdict_at_the_edge,
    assert_pause_command_goes_through,
    edge_refused_at_start,
    worker_refused_at_start,
)
from tests.kafka.tls import TlsFiles, make_tls_files
from tests.services import started

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
EDGE_PASSWORD = "edge-plain-password"
WORKER_PASSWORD = "worker-scram=password"  # an "=" in the value, as the properties format allows


def sasl_ssl_broker(tls: TlsFiles) -> SecuredListenerBroker:
    """SASL_SSL with PLAIN (the edge user) and SCRAM-SHA-512 (users added by the test)."""
    jaas = "org.apache.kafka.common.security"
    return SecuredListenerBroker(tls, "SASL_SSL", {
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        "plain.sasl.jaas.config": f'{jaas}.plain.PlainLoginModule required user_edge="{EDGE_PASSWORD}";',
        "scram-sha-512.sasl.jaas.config": f"{jaas}.scram.ScramLoginModule required;",
    })


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("kafka-tls"))


@pytest.fixture(scope="module")
def broker(tls: TlsFiles) -> Iterator[SecuredListenerBroker]:
    broker = sasl_ssl_broker(tls)
    with started(broker):
        add_scram_user(broker, "worker", WORKER_PASSWORD)
        yield broker


def add_scram_user(broker: SecuredListenerBroker, user: str, password: str) -> None:
    admin = clients.admin(KafkaConfig(broker.bootstrap))
    upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                          password.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)


def properties_file(path: Path, broker: SecuredListenerBroker, mechanism: str, user: str, password: str) -> Path:
    path.write_text(f"""\
# patchgate's Kafka client ({user})
bootstrap.servers = {broker.secured_bootstrap}
security.protocol = SASL_SSL
sasl.mechanism = {mechanism}
sasl.username = {user}
sasl.password = {password}
ssl.ca.location = {broker.tls.ca}
""")
    return path


def wait_accepted(kafka: KafkaConfig, timeout: float = 60.0) -> None:
    """Until the broker accepts these credentials (SCRAM users reach the listener through the metadata log)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check_connection(kafka, timeout=10)
            return
        except KafkaUnreachable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)  # polling a condition: the credential is not applied yet


def test_worker_and_edge_work_end_to_end_through_sasl_ssl(
        broker: SecuredListenerBroker, tmp_path: Path, redis_url: str, unique_name: Callable[[str], str]) -> None:
    worker_file = properties_file(tmp_path / "worker.properties", broker, "SCRAM-SHA-512", "worker", WORKER_PASSWORD)
    edge_file = properties_file(tmp_path / "edge.properties", broker, "PLAIN", "edge", EDGE_PASSWORD)
    wait_accepted(KafkaConfig.load(None, worker_file))
    assert_metadata_becomes_a_verdict_at_the_edge(broker, worker_file, edge_file, redis_url, unique_name)


def test_pause_command_from_the_cli_through_sasl_ssl(broker: SecuredListenerBroker, tmp_path: Path) -> None:
    worker_file = properties_file(tmp_path / "worker.properties", broker, "SCRAM-SHA-512", "worker", WORKER_PASSWORD)
    assert_pause_command_goes_through(broker, worker_file)


def test_a_wrong_password_ends_the_worker_at_start_with_a_clear_message(
        broker: SecuredListenerBroker, tmp_path: Path, redis_url: str) -> None:
    wrong = "not-the-worker-password"
    worker_file = properties_file(tmp_path / "worker.properties", broker, "SCRAM-SHA-512", "worker", wrong)
    stderr = worker_refused_at_start(worker_file, redis_url)
    assert f"patchgate worker: Kafka at {broker.secured_bootstrap} refused the client" in stderr
    assert "Authentication failed" in stderr and str(worker_file) in stderr
    assert wrong not in stderr and "Traceback" not in stderr


def test_a_wrong_password_ends_the_edge_at_start_with_a_clear_message(
        broker: SecuredListenerBroker, tmp_path: Path) -> None:
    wrong = "not-the-edge-password"
    edge_file = properties_file(tmp_path / "edge.properties", broker, "PLAIN", "edge", wrong)
    stderr = edge_refused_at_start(broker, edge_file)
    assert "Authentication failed" in stderr and wrong not in stderr


@pytest.mark.parametrize("command", ["api", "notify"])
def test_a_wrong_password_ends_the_api_and_the_notifier_at_start(broker: SecuredListenerBroker, tmp_path: Path,
                                                                  redis_url: str, command: str) -> None:
    wrong = "not-the-edge-password"
    client_file = properties_file(tmp_path / "client.properties", broker, "PLAIN", "edge", wrong)
    webhooks = tmp_path / "notify.toml"
    webhooks.write_text('[tenants."*"]\nurl = "https://ops.example/patchgate"\n')
    env = {"PATCHGATE_KAFKA_CONFIG": str(client_file), "PATCHGATE_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin",
           "PATCHGATE_API_TOKENS": "sasl-test-token-0123456789=*", "PATCHGATE_API_PORT": "0",
           "PATCHGATE_NOTIFY_CONFIG": str(webhooks), "PATCHGATE_NOTIFY_PROBE_PORT": "0"}  # 9466 may be taken
    done = subprocess.run([*patchgate_executable(), command], env=env, capture_output=True, timeout=120, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert f"patchgate {command}: Kafka at {broker.secured_bootstrap} refused the client" in stderr
    assert wrong not in stderr and "Traceback" not in stderr
