"""patchgate through a Kafka whose client listener is SSL with client certificates required (mutual TLS).

A real Apache Kafka with a certificate from a CA made for the test, asking every client of that
listener for a certificate the same CA signed: the worker (Faust and its librdkafka clients) and
the edge's publisher and verdict follower present one from a properties file (its key encrypted,
``ssl.key.password``); an edge record becomes a verdict the edge follows. A client without a
certificate ends at start-up with one clear message and exit status 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from processors.kafka.clients import check_connection
from processors.kafka.config import KafkaConfig
from tests.kafka.secured_broker import (
    SecuredListenerBroker,
    assert_metadata_becomes_a_verdict_at_the_edge,
    edge_refused_at_start,
    worker_refused_at_start,
)
from tests.kafka.tls import TlsFiles, make_tls_files
from tests.services import started

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("kafka-mtls"))


@pytest.fixture(scope="module")
def broker(tls: TlsFiles) -> Iterator[SecuredListenerBroker]:
    broker = SecuredListenerBroker(tls, "SSL", {
        "ssl.client.auth": "required",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.ca),
    })
    with started(broker):
        yield broker


def properties_file(path: Path, broker: SecuredListenerBroker, *, with_certificate: bool = True) -> Path:
    tls = broker.tls
    certificate = f"""\
ssl.certificate.location = {tls.client_certificate}
ssl.key.location = {tls.client_key}
ssl.key.password = {tls.client_key_password}
""" if with_certificate else ""
    path.write_text(f"""\
# patchgate's Kafka client, mutual TLS
bootstrap.servers = {broker.secured_bootstrap}
security.protocol = SSL
ssl.ca.location = {tls.ca}
{certificate}""")
    return path


def test_worker_and_edge_work_end_to_end_through_mutual_tls(
        broker: SecuredListenerBroker, tmp_path: Path, redis_url: str, unique_name: Callable[[str], str]) -> None:
    client_file = properties_file(tmp_path / "client.properties", broker)
    check_connection(KafkaConfig.load(None, client_file))
    assert_metadata_becomes_a_verdict_at_the_edge(broker, client_file, client_file, redis_url, unique_name)


def test_a_worker_without_a_client_certificate_ends_at_start_with_a_clear_message(
        broker: SecuredListenerBroker, tmp_path: Path, redis_url: str) -> None:
    client_file = properties_file(tmp_path / "client.properties", broker, with_certificate=False)
    stderr = worker_refused_at_start(client_file, redis_url)
    assert f"patchgate worker: Kafka at {broker.secured_bootstrap} refused the client" in stderr, stderr
    assert str(client_file) in stderr and "Traceback" not in stderr


def test_an_edge_without_a_client_certificate_ends_at_start_with_a_clear_message(
        broker: SecuredListenerBroker, tmp_path: Path) -> None:
    client_file = properties_file(tmp_path / "edge.properties", broker, with_certificate=False)
    edge_refused_at_start(broker, client_file)
