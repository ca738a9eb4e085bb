"""The per-tenant topic mode behind real Kafka ACLs (Apache Kafka with StandardAuthorizer and SASL/PLAIN):
a tenant's edge can write its own metadata topic and no other, and the worker processes what it wrote;
it can read its own verdicts topic and no other, and its verdict cache gets its verdicts from there."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from edge.verdict_cache import VerdictCache
from processors.devservices.apache_kafka import ApacheKafkaBroker
from processors.devservices.base import free_port
from processors.devservices.worker_process import WorkerProcess
from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.kafka.topics import ensure_tenant_topics
from processors.settings import Settings
from tests.services import started
from tests.worker.factories import metadata_event
from tests.worker.harness import isolated_settings, read_topic
from tests.worker.test_tenant_topics import wait_processed

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
EDGE_PASSWORDS = {"edge-contoso": "contoso-edge-password", "edge-fabrikam": "fabrikam-edge-password"}


class AuthorizingBroker(ApacheKafkaBroker):
    """Apache Kafka with an authorizer: PLAINTEXT for patchgate's own processes (a super user, as a
    worker with its Read/Write ACLs would be) and SASL/PLAIN for the tenants' edges."""

    def __init__(self) -> None:
        super().__init__(partitions=4)
        self.sasl_port = free_port()
        self.sasl_bootstrap = f"127.0.0.1:{self.sasl_port}"

    def server_properties(self, log_dir: Path) -> str:
        users = " ".join(f'user_{name}="{password}"' for name, password in EDGE_PASSWORDS.items())
        extra = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config":
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": "User:ANONYMOUS",
            "auto.create.topics.enable": "false",
        }
        return super().server_properties(log_dir) + "".join(f"{key}={value}\n" for key, value in extra.items())


@pytest.fixture(scope="module")
def authorizing_broker() -> Iterator[AuthorizingBroker]:
    with started(AuthorizingBroker()) as broker:
        yield broker


def edge_may(broker: AuthorizingBroker, principal: str, topic: str, operation: AclOperation) -> None:
    """The ACLs of the operating guide for one tenant's edges, on one of their own topics (LITERAL):
    ``operation`` (write their metadata topic, read their verdicts topic) and describe."""
    admin = clients.admin(KafkaConfig(broker.bootstrap))
    bindings = [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{principal}", "*",
                           allowed, AclPermissionType.ALLOW)
                for allowed in (operation, AclOperation.DESCRIBE)]
    for future in admin.create_acls(bindings).values():
        future.result(timeout=30)
    # the broker's authorizer learns them from the metadata log: wait until it answers with them
    wanted = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{principal}", "*",
                              AclOperation.ANY, AclPermissionType.ANY)
    deadline = time.monotonic() + 30
    while len(admin.describe_acls(wanted).result(timeout=30)) < len(bindings):
        assert time.monotonic() < deadline, f"the broker never applied the ACLs of {principal}"
        time.sleep(0.1)  # polling a condition


def edge_properties(broker: AuthorizingBroker, principal: str) -> dict[str, str]:
    return {"bootstrap.servers": broker.sasl_bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "PLAIN", "sasl.username": principal, "sasl.password": EDGE_PASSWORDS[principal]}


def as_edge(broker: AuthorizingBroker, principal: str) -> KafkaConfig:
    properties = edge_properties(broker, principal)
    return KafkaConfig(properties.pop("bootstrap.servers"), properties)


def produce_as(broker: AuthorizingBroker, principal: str, topic: str, key: bytes, value: bytes
               ) -> tuple[str | None, int, int]:
    """Produce one record as an edge principal: (the delivery error's name or None, partition, offset)."""
    producer = clients.producer(as_edge(broker, principal), {"message.timeout.ms": 15000})
    outcome: list[tuple[str | None, int, int]] = []

    def delivered(error: Any, message: Any) -> None:
        outcome.append((None if error is None else error.name(), message.partition(), message.offset()))

    producer.produce(topic, key=key, value=value, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert len(outcome) == 1
    return outcome[0]


@pytest.fixture
def acl_settings(authorizing_broker: AuthorizingBroker, redis_url: str, unique_name: Callable[[str], str]
                 ) -> Settings:
    settings = isolated_settings(authorizing_broker.bootstrap, redis_url, unique_name,
                                 metadata_topic_mode="per-tenant", metadata_partitions=4)
    ensure_tenant_topics(settings, ["contoso", "fabrikam"])
    for tenant in ("contoso", "fabrikam"):
        edge_may(authorizing_broker, f"edge-{tenant}", settings.tenant_metadata_topic(tenant), AclOperation.WRITE)
        edge_may(authorizing_broker, f"edge-{tenant}", settings.tenant_verdicts_topic(tenant), AclOperation.READ)
    return settings


def topic_error_as(broker: AuthorizingBroker, principal: str, topic: str) -> str | None:
    """The error the brokers answer an edge principal's request for a topic's metadata with (None: the
    topic and its partitions; a consumer fetches nothing of a topic it gets no metadata for)."""
    consumer = clients.consumer(as_edge(broker, principal), {"group.id": f"reader-{principal}"})
    try:
        error = consumer.list_topics(topic, timeout=30).topics[topic].error
        return None if error is None else str(error.name())
    finally:
        consumer.close()


def cache_dump_as(broker: AuthorizingBroker, principal: str, tenant: str, settings: Settings, folder: Path
                  ) -> list[dict[str, Any]]:
    """``patchgate edge cache-dump`` of an edge of ``tenant`` (its config, its principal, the per-tenant
    mode and the shared topic names): the verdicts and decisions its cache holds."""
    properties = folder / f"{principal}.properties"
    properties.write_text("".join(f"{k}={v}\n" for k, v in edge_properties(broker, principal).items()))
    config = folder / f"{principal}.toml"
    config.write_text(f'[[connector]]\nid = "{tenant}"\ntenant_id = "{tenant}"\ntype = "OnPremises"\n'
                      'client_ips = ["203.0.113.0/24"]\n')
    env = {**os.environ, "PATCHGATE_KAFKA_CONFIG": str(properties), "PATCHGATE_EDGE_CONFIG": str(config),
           "PATCHGATE_METADATA_TOPIC_MODE": "per-tenant", "PATCHGATE_TOPIC_VERDICTS": settings.topic_verdicts,
           "PATCHGATE_TOPIC_METADATA": settings.topic_metadata, "PATCHGATE_EDGE_CATCHUP_TIMEOUT": "60"}
    env.pop("PATCHGATE_KAFKA_BOOTSTRAP", None)
    done = subprocess.run([sys.executable, "-m", "edge.cli", "edge", "cache-dump", "--decide-at", str(T0.timestamp())],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stderr.splitlines()[-1])
    assert summary["caught_up"] and summary["metrics"]["verdicts_foreign_tenant"] == 0
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def test_an_edge_writes_its_own_tenant_topic_only_and_the_worker_processes_it(
        authorizing_broker: AuthorizingBroker, acl_settings: Settings) -> None:
    settings = acl_settings
    contoso_topic = settings.tenant_metadata_topic("contoso")
    own = orjson.dumps(metadata_event("acl-1", T0))
    forged = orjson.dumps(metadata_event("acl-forged", T0, tenant="fabrikam", server="ex09.fabrikam.com"))
    # contoso's edge cannot reach fabrikam's topic, nor the shared one, whatever key it uses
    for topic in (settings.tenant_metadata_topic("fabrikam"), settings.topic_metadata):
        error, _, _ = produce_as(authorizing_broker, "edge-contoso", topic, b"fabrikam/ex09.fabrikam.com", forged)
        assert error == "TOPIC_AUTHORIZATION_FAILED"
    error, partition, offset = produce_as(authorizing_broker, "edge-contoso", contoso_topic,
                                          b"contoso/ex01.contoso.com", own)
    assert error is None

    worker = WorkerProcess(settings)
    worker.start()
    try:
        assert len(read_topic(settings.kafka_bootstrap, contoso_topic)) == 1
        for topic in (settings.tenant_metadata_topic("fabrikam"), settings.topic_metadata):
            assert read_topic(settings.kafka_bootstrap, topic) == []  # the forged records reached nothing
        wait_processed(settings, contoso_topic, [(partition, offset)], timeout=120)
        verdicts = [value["server_key"] for _, value in read_topic(settings.kafka_bootstrap,
                                                                     settings.tenant_verdicts_topic("contoso"))]
        assert verdicts == ["contoso/ex01.contoso.com"]
    finally:
        worker.stop()



def test_an_edge_reads_its_own_tenant_s_verdicts_topic_only_and_gets_its_verdicts_from_it(
        authorizing_broker: AuthorizingBroker, acl_settings: Settings, tmp_path: Path) -> None:
    settings = acl_settings
    placed = {}
    for tenant, server in (("contoso", "ex01.contoso.com"), ("fabrikam", "ex09.fabrikam.com")):
        record = orjson.dumps(metadata_event(f"{tenant}-1", T0, tenant=tenant, server=server))
        error, partition, offset = produce_as(authorizing_broker, f"edge-{tenant}",
                                              settings.tenant_metadata_topic(tenant), f"{tenant}/{server}".encode(),
                                              record)
        assert error is None
        placed[tenant] = (partition, offset)

    worker = WorkerProcess(settings)
    worker.start()
    try:
        for tenant, (partition, offset) in placed.items():
            wait_processed(settings, settings.tenant_metadata_topic(tenant), [(partition, offset)], timeout=120)
        held = {t: read_topic(settings.kafka_bootstrap, settings.tenant_verdicts_topic(t)) for t in placed}
        assert {tenant: [key for key, _ in records] for tenant, records in held.items()} == {
            "contoso": [b"contoso/ex01.contoso.com"], "fabrikam": [b"fabrikam/ex09.fabrikam.com"]}
        assert read_topic(settings.kafka_bootstrap, settings.topic_verdicts) == []
    finally:
        worker.stop()

    # contoso's edge cannot read fabrikam's verdicts, nor the shared topic: not even their metadata ...
    for topic in (settings.tenant_verdicts_topic("fabrikam"), settings.topic_verdicts):
        assert topic_error_as(authorizing_broker, "edge-contoso", topic) == "TOPIC_AUTHORIZATION_FAILED"
    assert topic_error_as(authorizing_broker, "edge-contoso", settings.tenant_verdicts_topic("contoso")) is None
    # ... so a verdict cache pointed at fabrikam's topic with contoso's credentials gets nothing of it and
    # says so (the edge stops at start, exit 2), rather than taking the topic for an empty one
    fabrikam_topic = settings.tenant_verdicts_topic("fabrikam")
    with VerdictCache(as_edge(authorizing_broker, "edge-contoso"), topic=fabrikam_topic, tenant="fabrikam") as stolen:
        assert not stolen.wait_settled(30)
        assert stolen.refused == (f"reading {fabrikam_topic}: Broker: Topic authorization failed "
                                  "(the principal needs Read and Describe on it)")
        assert (len(stolen), stolen.metrics.verdicts_applied, stolen.caught_up) == (0, 0, False)
    # contoso's own edge (its config, its principal, the shared topic names) holds its verdict and decides
    # by it (the first stage: reported, not enforced)
    dumped = cache_dump_as(authorizing_broker, "edge-contoso", "contoso", settings, tmp_path)
    (_, published), = held["contoso"]
    assert [(line["verdict"], line["decision"], line["reason"]) for line in dumped] == [
        (published, "accept", "outside-window")]
