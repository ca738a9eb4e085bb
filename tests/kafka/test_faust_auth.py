"""The Kafka configuration as the worker's Faust clients see it: credentials, TLS context, refusals."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials

from processors.kafka.config import KafkaConfig, KafkaConfigError
from processors.kafka.faust_auth import faust_broker_options
from tests.kafka.tls import TlsFiles, make_tls_files


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def test_sasl_ssl_becomes_sasl_credentials_with_a_verifying_context(tls: TlsFiles) -> None:
    config = KafkaConfig("127.0.0.1:9094", {
        "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "worker",
        "sasl.password": "worker-password", "ssl.ca.location": str(tls.ca), "client.id": "patchgate-worker-1"})
    options = faust_broker_options(config)
    credentials = options.credentials
    assert isinstance(credentials, SASLCredentials)
    assert (credentials.protocol.value, credentials.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (credentials.username, credentials.password) == ("worker", "worker-password")
    context = credentials.ssl_context
    assert context is not None and context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "patchgate throwaway test CA"),),)]
    assert options.client_id == "patchgate-worker-1"
    assert "worker-password" not in repr(credentials)


def test_ssl_with_a_client_certificate_and_no_host_name_check(tls: TlsFiles) -> None:
    config = KafkaConfig("127.0.0.1:9093", {
        "security.protocol": "SSL", "ssl.ca.location": str(tls.ca),
        "ssl.certificate.location": str(tls.client_certificate), "ssl.key.location": str(tls.client_key),
        "ssl.key.password": tls.client_key_password, "ssl.endpoint.identification.algorithm": "none"})
    credentials = faust_broker_options(config).credentials
    assert isinstance(credentials, SSLCredentials) and credentials.protocol.value == "SSL"
    assert credentials.context.check_hostname is False


def test_plaintext_needs_no_credentials() -> None:
    assert faust_broker_options(KafkaConfig("127.0.0.1:9092")).credentials is None


def test_a_wrong_key_password_is_a_clear_error_without_the_password(tls: TlsFiles) -> None:
    config = KafkaConfig("127.0.0.1:9093", {
        "security.protocol": "SSL", "ssl.certificate.location": str(tls.client_certificate),
        "ssl.key.location": str(tls.client_key), "ssl.key.password": "not-the-passphrase"}, "client.properties")
    with pytest.raises(KafkaConfigError) as error:
        faust_broker_options(config)
    assert "client.properties: ssl.certificate.location / ssl.key.location" in str(error.value)
    assert "not-the-passphrase" not in str(error.value)


@pytest.mark.parametrize(("properties", "message"), [
    ({"socket.keepalive.enable": "true", "linger.ms": "5"},
     "client.properties: linger.ms, socket.keepalive.enable: cannot be applied to the worker's Faust"),
    ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "GSSAPI"},
     "client.properties: sasl.mechanisms=GSSAPI: the worker's Faust clients support PLAIN"),
    ({"security.protocol": "SSL", "ssl.certificate.location": "/etc/hosts"},
     "ssl.certificate.location and ssl.key.location go together"),
])
def test_what_faust_cannot_apply_is_refused_by_name(properties: dict[str, str], message: str) -> None:
    with pytest.raises(KafkaConfigError, match=message):
        faust_broker_options(KafkaConfig("127.0.0.1:9092", properties, "client.properties"))


def test_the_worker_refuses_before_it_connects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from processors.worker.cli import register

    path = tmp_path / "client.properties"
    path.write_text("bootstrap.servers=127.0.0.1:1\nqueue.buffering.max.ms=5\n")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["worker"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATCHGATE_KAFKA_CONFIG", str(path))
        patch.delenv("PATCHGATE_KAFKA_BOOTSTRAP", raising=False)
        assert args.handler(args) == 2
    refusal = "queue.buffering.max.ms: cannot be applied to the worker's Faust (aiokafka) clients"
    assert refusal in capsys.readouterr().err
