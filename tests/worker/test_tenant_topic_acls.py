"""The per-tenant topic mode behind real Kafka ACLs (Apache Kafka with StandardAuthorizer and SASL/PLAIN):
a tenant's edge can write its own metadata topic and no other, and the worker processes what it wrote."""

from __future__ import annotations

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


def edge_may_write(broker: AuthorizingBroker, principal: str, topic: str) -> None:
    """The ACLs of the operating guide for one tenant's edges: write (and describe) their own topic only."""
    admin = clients.admin(KafkaConfig(broker.bootstrap))
    bindings = [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{principal}", "*",
                           operation, AclPermissionType.ALLOW)
                for operation in (AclOperation.WRITE, AclOperation.DESCRIBE)]
    for future in admin.create_acls(bindings).values():
        future.result(timeout=30)
    # the broker's authorizer learns them from the metadata log: wait until it answers with them
    wanted = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{principal}", "*",
                              AclOperation.ANY, AclPermissionType.ANY)
    deadline = time.monotonic() + 30
    while len(admin.describe_acls(wanted).result(timeout=30)) < len(bindings):
        assert time.monotonic() < deadline, f"the broker never applied the ACLs of {principal}"
        time.sleep(0.1)  # polling a condition


def produce_as(broker: AuthorizingBroker, principal: str, topic: str, key: bytes, value: bytes
               ) -> tuple[str | None, int, int]:
    """Produce one record as an edge principal: (the delivery error's name or None, partition, offset)."""
    sasl = KafkaConfig(broker.sasl_bootstrap, {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
                                               "sasl.username": principal, "sasl.password": EDGE_PASSWORDS[principal]})
    producer = clients.producer(sasl, {"message.timeout.ms": 15000})
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
        edge_may_write(authorizing_broker, f"edge-{tenant}", settings.tenant_metadata_topic(tenant))
    return settings


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
        verdicts = [value["server_key"] for _, value in read_topic(settings.kafka_bootstrap, settings.topic_verdicts)]
        assert verdicts == ["contoso/ex01.contoso.com"]
    finally:
        worker.stop()

