"""Create patchgate's topics with explicit configurations (idempotent).

Explicit configs matter: Tansu keeps only the configs given at creation, and the verdicts topic
must be compacted (latest verdict per server key) on Apache Kafka.

In the per-tenant topic mode (``PATCHGATE_METADATA_TOPIC_MODE=per-tenant``) each tenant's edges
write to ``<PATCHGATE_TOPIC_METADATA>.<tenant_id>``: :func:`ensure_tenant_topics` creates them
(with the metadata topic's configuration) and :func:`tenant_topics` lists those the broker holds.
"""

from __future__ import annotations

import re
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from processors.kafka import clients
from processors.settings import Settings

DAY_MS = 86_400_000


def metadata_spec(settings: Settings, name: str) -> NewTopic:
    # 8 MiB: an oversized event must reach the worker to be dead-lettered with a reason, rather
    # than bounce at the producer of an edge that did not cap its headers
    return NewTopic(name, num_partitions=settings.metadata_partitions, replication_factor=1,
                    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS),
                            "max.message.bytes": str(8 * 1024 * 1024)})


def topic_specs(settings: Settings) -> list[NewTopic]:
    n = settings.metadata_partitions

    def spec(name: str, partitions: int, **config: str) -> NewTopic:
        return NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)

    return [
        metadata_spec(settings, settings.topic_metadata),
        spec(settings.topic_commands, n, **{"cleanup.policy": "delete", "retention.ms": str(400 * DAY_MS)}),
        spec(settings.topic_verdicts, n, **{"cleanup.policy": "compact", "retention.ms": "-1",
                                            "min.compaction.lag.ms": "60000"}),
        spec(settings.topic_notifications, n, **{"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}),
        spec(settings.topic_deadletter, n, **{"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}),
    ]


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the missing topics; return the names created."""
    return _create_missing(settings, topic_specs(settings), timeout)


def ensure_tenant_topics(settings: Settings, tenants: list[str], timeout: float = 30.0) -> list[str]:
    """Create the per-tenant metadata topics of ``tenants`` that are missing; return the names created."""
    pattern = re.compile(settings.metadata_topic_pattern)
    names = [settings.tenant_metadata_topic(tenant) for tenant in tenants]
    bad = [name for name in names if not pattern.match(name)]
    if bad:
        raise ValueError(f"not a tenant metadata topic name (PATCHGATE_METADATA_TENANT_PATTERN): {bad}")
    return _create_missing(settings, [metadata_spec(settings, name) for name in names], timeout)


def tenant_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """The per-tenant metadata topics the broker holds, sorted."""
    pattern = re.compile(settings.metadata_topic_pattern)
    admin = clients.admin(settings.kafka)
    return sorted(name for name in admin.list_topics(timeout=timeout).topics if pattern.match(name))


def _create_missing(settings: Settings, specs: list[NewTopic], timeout: float) -> list[str]:
    # log_level 4: warnings and errors only; at the default (6) destroying the client prints an info
    # line ("Purging 1 unserved events from background queue") on the caller's console
    admin = clients.admin(settings.kafka, {"log_level": 4})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [spec for spec in specs if spec.topic not in existing]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as error:
            if error.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: another worker won the race
                raise
    _wait_listed(admin, [spec.topic for spec in missing], timeout)
    return created


def _wait_listed(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Return once the broker lists every topic of ``names``: Apache Kafka's brokers learn of a created
    topic shortly after the controller acknowledges it, and a client asking in between (a worker
    starting, a tenant listing) would not see it."""
    deadline = time.monotonic() + timeout
    while True:
        listed = admin.list_topics(timeout=timeout).topics
        absent = [name for name in names if name not in listed or listed[name].error is not None]
        if not absent:
            return
        if time.monotonic() >= deadline:
            raise KafkaException(f"created topics not listed by the broker within {timeout:.0f}s: {absent}")
        time.sleep(0.05)  # polling the broker's metadata for the condition
