"""patchgate through a Kafka whose client listener is SASL_SSL with OAUTHBEARER (OIDC client credentials).

A real Apache Kafka validates the clients' JWTs with its own ``OAuthBearerValidatorCallbackHandler``
against the JWKS of a small identity provider run by the test (:mod:`tests.kafka.oidc_provider`),
whose token endpoint speaks HTTPS with a certificate of the test CA (``https.ca.location``). The
worker's Faust clients get their tokens from patchgate's token provider, the librdkafka clients
(worker output, edge, pause CLI, API, notifier) fetch theirs themselves. A wrong client secret stops
each component at start with one line and exit status 2; a worker whose tokens live 20 s renews its
token when the broker ends the expired sessions and keeps working.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.publisher import MetadataPublisher
from edge.settings import EdgeSettings
from edge.verdict_cache import VerdictCache
from processors.devservices.worker_process import WorkerProcess, patchgate_executable
from processors.kafka.clients import check_connection
from processors.kafka.config import KafkaConfig
from tests.kafka.oidc_provider import AUDIENCE, ISSUER, Client, OidcProvider, TokenRequest
from tests.kafka.secured_broker import (
    SecuredListenerBroker,
    assert_metadata_becomes_a_verdict_at_the_edge,
    assert_pause_command_goes_through,
    edge_refused_at_start,
    worker_refused_at_start,
)
from tests.kafka.tls import TlsFiles, make_tls_files
from tests.services import started
from tests.worker.factories import metadata_event
from tests.worker.harness import isolated_settings

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
SHORT_LIFETIME_S = 20
CLIENTS = {
    "patchgate-worker": Client("worker-client-secret=with-equals"),
    "patchgate-edge": Client("edge-client-secret"),
    "patchgate-worker-short": Client("short-client-secret", lifetime_s=SHORT_LIFETIME_S),
}
WRONG_SECRET = "not-the-client-secret"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("kafka-oauth-tls"))


@pytest.fixture(scope="module")
def provider(tls: TlsFiles) -> Iterator[OidcProvider]:
    with OidcProvider(tls, CLIENTS) as provider:
        yield provider


@pytest.fixture(scope="module")
def broker(tls: TlsFiles, provider: OidcProvider) -> Iterator[SecuredListenerBroker]:
    security = "org.apache.kafka.common.security.oauthbearer"
    broker = SecuredListenerBroker(tls, "SASL_SSL", {
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "oauthbearer.sasl.jaas.config": f"{security}.OAuthBearerLoginModule required;",
        "oauthbearer.sasl.server.callback.handler.class": f"{security}.OAuthBearerValidatorCallbackHandler",
        "sasl.oauthbearer.jwks.endpoint.url": provider.jwks_url,
        "sasl.oauthbearer.expected.audience": AUDIENCE,
        "sasl.oauthbearer.expected.issuer": ISSUER,
        # sessions end when their token expires (KIP-368): a client must come back with a new token
        "oauthbearer.connections.max.reauth.ms": "3600000",
    })
    broker.java_options = (f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={provider.jwks_url}",)
    with started(broker):
        yield broker


def properties_file(path: Path, broker: SecuredListenerBroker, provider: OidcProvider, client_id: str,
                    secret: str | None = None) -> Path:
    path.write_text(f"""\
# patchgate's Kafka client ({client_id}), OIDC client credentials
bootstrap.servers = {broker.secured_bootstrap}
security.protocol = SASL_SSL
ssl.ca.location = {broker.tls.ca}
sasl.mechanism = OAUTHBEARER
sasl.oauthbearer.method = oidc
sasl.oauthbearer.client.id = {client_id}
sasl.oauthbearer.client.secret = {secret if secret is not None else CLIENTS[client_id].secret}
sasl.oauthbearer.token.endpoint.url = {provider.token_url}
sasl.oauthbearer.scope = kafka
https.ca.location = {broker.tls.ca}
""")
    return path


def by_patchgate(request: TokenRequest) -> bool:
    """Asked by patchgate's token provider (the worker's Faust clients or its start-up check), not librdkafka."""
    return request.user_agent.startswith("patchgate")


def test_worker_and_edge_work_end_to_end_through_oauthbearer(
        broker: SecuredListenerBroker, provider: OidcProvider, tmp_path: Path, redis_url: str,
        unique_name: Callable[[str], str]) -> None:
    worker_file = properties_file(tmp_path / "worker.properties", broker, provider, "patchgate-worker")
    edge_file = properties_file(tmp_path / "edge.properties", broker, provider, "patchgate-edge")
    check_connection(KafkaConfig.load(None, worker_file))
    assert_metadata_becomes_a_verdict_at_the_edge(broker, worker_file, edge_file, redis_url, unique_name)
    granted = [(r.client_id, by_patchgate(r), r.scope) for r in provider.requests if r.granted]
    assert ("patchgate-worker", True, "kafka") in granted  # the worker's Faust clients, patchgate's provider
    assert ("patchgate-worker", False, "kafka") in granted  # its librdkafka clients
    assert ("patchgate-edge", False, "kafka") in granted


def test_pause_command_from_the_cli_through_oauthbearer(
        broker: SecuredListenerBroker, provider: OidcProvider, tmp_path: Path) -> None:
    client_file = properties_file(tmp_path / "worker.properties", broker, provider, "patchgate-worker")
    assert_pause_command_goes_through(broker, client_file)


def test_a_wrong_client_secret_ends_the_worker_at_start_naming_the_token_endpoint(
        broker: SecuredListenerBroker, provider: OidcProvider, tmp_path: Path, redis_url: str) -> None:
    worker_file = properties_file(tmp_path / "worker.properties", broker, provider, "patchgate-worker", WRONG_SECRET)
    stderr = worker_refused_at_start(worker_file, redis_url, within_s=30)
    assert stderr == (f"patchgate worker: OIDC token endpoint {provider.token_url} refused client id "
                      f"'patchgate-worker': HTTP 401 invalid_client (client authentication failed) "
                      f"(configuration {worker_file})\n")


def test_a_wrong_client_secret_ends_the_edge_at_start(
        broker: SecuredListenerBroker, provider: OidcProvider, tmp_path: Path) -> None:
    edge_file = properties_file(tmp_path / "edge.properties", broker, provider, "patchgate-edge", WRONG_SECRET)
    stderr = edge_refused_at_start(broker, edge_file)
    assert "Failed to acquire SASL OAUTHBEARER token" in stderr and "invalid_client" in stderr
    assert WRONG_SECRET not in stderr


@pytest.mark.parametrize("command", ["api", "notify"])
def test_a_wrong_client_secret_ends_the_api_and_the_notifier_at_start(
        broker: SecuredListenerBroker, provider: OidcProvider, tmp_path: Path, redis_url: str, command: str) -> None:
    client_file = properties_file(tmp_path / "client.properties", broker, provider, "patchgate-edge", WRONG_SECRET)
    webhooks = tmp_path / "notify.toml"
    webhooks.write_text('[tenants."*"]\nurl = "https://ops.example/patchgate"\n')
    env = {"PATCHGATE_KAFKA_CONFIG": str(client_file), "PATCHGATE_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin",
           "PATCHGATE_API_TOKENS": "oauth-test-token-0123456789=*", "PATCHGATE_API_PORT": "0",
           "PATCHGATE_NOTIFY_CONFIG": str(webhooks), "PATCHGATE_NOTIFY_PROBE_PORT": "0"}
    done = subprocess.run([*patchgate_executable(), command], env=env, capture_output=True, timeout=120, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert f"patchgate {command}: Kafka at {broker.secured_bootstrap} refused the client" in stderr, stderr
    assert "Failed to acquire SASL OAUTHBEARER token" in stderr and "invalid_client" in stderr
    assert WRONG_SECRET not in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("argv", [["pause", "--tenant", "contoso", "--days", "3"], ["topics", "check"]])
def test_a_wrong_client_secret_ends_the_pause_and_topics_cli_at_once(
        broker: SecuredListenerBroker, provider: OidcProvider, tmp_path: Path, argv: list[str]) -> None:
    client_file = properties_file(tmp_path / "client.properties", broker, provider, "patchgate-edge", WRONG_SECRET)
    env = {"PATCHGATE_KAFKA_CONFIG": str(client_file), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([*patchgate_executable(), *argv], env=env, capture_output=True, timeout=120, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    program = "patchgate pause" if argv[0] == "pause" else "patchgate topics check"
    assert stderr == (f"{program}: OIDC token endpoint {provider.token_url} refused client id 'patchgate-edge': "
                      f"HTTP 401 invalid_client (client authentication failed) (configuration {client_file})\n")


def test_the_worker_renews_its_token_on_expiry_and_keeps_working(
        broker: SecuredListenerBroker, provider: OidcProvider, tmp_path: Path, redis_url: str,
        unique_name: Callable[[str], str]) -> None:
    client_id = "patchgate-worker-short"
    worker_file = properties_file(tmp_path / "worker.properties", broker, provider, client_id)
    edge_file = properties_file(tmp_path / "edge.properties", broker, provider, "patchgate-edge")
    settings = isolated_settings("", redis_url, unique_name, kafka_config=worker_file, metadata_partitions=4)
    edge = EdgeSettings.from_env({"PATCHGATE_KAFKA_CONFIG": str(edge_file),
                                  "PATCHGATE_TOPIC_METADATA": settings.topic_metadata,
                                  "PATCHGATE_TOPIC_VERDICTS": settings.topic_verdicts})

    def faust_tokens(requests: list[TokenRequest]) -> list[TokenRequest]:
        return [r for r in requests if r.client_id == client_id and r.granted and by_patchgate(r)]

    worker = WorkerProcess(settings)
    cache = VerdictCache(edge.kafka, topic=edge.topic_verdicts)
    publisher = MetadataPublisher(edge.kafka, topic=edge.topic_metadata)
    worker.start()
    cache.start()
    publisher.start()
    try:
        assert cache.wait_caught_up(60)
        assert publisher.publish("contoso/ex01.contoso.com", metadata_event("oauth-1", T0))
        assert publisher.flush(30) == 0
        assert cache.wait_until(lambda: len(cache) == 1, 120), worker.log_tail()
        first = faust_tokens(provider.requests)[-1]  # the token the Faust clients work with
        # the broker ends the sessions when that token expires; the clients come back with a new one
        renewed = faust_tokens(provider.wait_for(lambda rs: faust_tokens(rs)[-1] != first, 120))[-1]
        assert renewed.issued_at >= first.issued_at + 0.8 * SHORT_LIFETIME_S  # kept until 80 % of its life
        assert publisher.publish("contoso/ex02.contoso.com", metadata_event("oauth-2", T0, server="ex02.contoso.com"))
        assert publisher.flush(30) == 0
        assert cache.wait_until(lambda: len(cache) == 2, 120), worker.log_tail()
        assert sorted(v["server_key"] for v in cache.snapshot()) == ["contoso/ex01.contoso.com",
                                                                     "contoso/ex02.contoso.com"]
        assert worker.process is not None and worker.process.poll() is None
        assert "Authenticated via OAUTHBEARER" in worker.log_path.read_text()  # aiokafka, not librdkafka
    finally:
        publisher.stop(5.0)
        cache.stop()
        worker.stop()
