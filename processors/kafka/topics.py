"""patchgate's topics: what each must look like, creating the missing ones, checking the existing ones.

Every topic is created with explicit configurations: Tansu keeps only the configs given at creation,
and the verdicts topic must be compacted (latest verdict per server key) on Apache Kafka.
Replication factor and ``min.insync.replicas`` come from ``PATCHGATE_TOPIC_REPLICATION_FACTOR`` and
``PATCHGATE_TOPIC_MIN_INSYNC_REPLICAS``, partitions from the per-topic settings.

A topic that already exists is compared with its :class:`TopicSpec` (:func:`plan`): a *contradiction*
is a difference patchgate cannot run with (verdicts not compacted, commands deleted before their
ids are forgotten, fewer partitions or replicas than configured, ``min.insync.replicas`` too low);
any other difference is only reported. Workers refuse to start on a contradiction
(:func:`require_no_contradictions`); ``patchgate topics plan|create|check`` shows them.

In the per-tenant topic mode (``PATCHGATE_METADATA_TOPIC_MODE=per-tenant``) each tenant's edges
write to ``<PATCHGATE_TOPIC_METADATA>.<tenant_id>`` and read ``<PATCHGATE_TOPIC_VERDICTS>.<tenant_id>``:
:func:`ensure_tenant_topics` creates both (with the metadata and the verdicts topic's configuration),
:func:`tenant_topics` lists the metadata topics the broker holds. A tenant is known by its metadata
topic: :func:`plan` (``patchgate topics plan|check``, and the worker's check at start) covers both
topics of every tenant whose metadata topic the brokers hold, ``patchgate topics create`` creates
their missing verdicts topics, and :func:`serving_tenant_topics` gives the worker the tenant topics it
may consume: those whose verdicts topic exists (a missing one is created first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from processors.errors import PatchgateError
from processors.kafka import clients
from processors.settings import Settings, env_name

log = logging.getLogger(__name__)
DAY_MS = 86_400_000
# Operator commands are replayed from the topic (a full replay rebuilds pause state from them) and
# their ids are remembered in Redis without expiry: the topic keeps them for 400 days, more than the
# pause quota's calendar year and the year before it, and a topic that keeps them for less
# contradicts patchgate.
COMMANDS_RETENTION_MS = 400 * DAY_MS
# an oversized event must reach the worker to be dead-lettered with a reason, rather than bounce at
# the producer of an edge that did not cap its headers
METADATA_MAX_MESSAGE_BYTES = 8 * 1024 * 1024

# what Apache Kafka assumes for a topic config the broker does not report (Tansu reports only the
# configs given at creation)
KAFKA_DEFAULTS: Mapping[str, str] = {
    "cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS), "retention.bytes": "-1",
    "min.insync.replicas": "1",
}


class TopicsContradict(PatchgateError, RuntimeError):
    """Existing topics contradict what patchgate needs; the message has one line per contradiction."""

    def __init__(self, contradictions: Sequence[str]) -> None:
        super().__init__("\n".join(contradictions))
        self.contradictions = list(contradictions)


class TopicsNotCreated(PatchgateError, RuntimeError):
    """The brokers refused to create a topic (e.g. a replication factor above the number of brokers)."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as patchgate creates it; ``partitions_setting`` names the variable of its count."""

    role: str
    name: str
    partitions: int
    partitions_setting: str
    replication_factor: int
    config: Mapping[str, str]

    def new_topic(self) -> NewTopic:
        return NewTopic(self.name, num_partitions=self.partitions, replication_factor=self.replication_factor,
                        config=dict(self.config))


@dataclass(frozen=True, slots=True)
class ExistingTopic:
    """What the brokers report of a topic: partitions, the smallest replica count of a partition, configs
    (None when the brokers refuse to describe them: DescribeConfigs not granted)."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] | None

    def value(self, key: str) -> str | None:
        if self.config is None:
            return None
        return self.config.get(key, KAFKA_DEFAULTS.get(key))


@dataclass(slots=True)
class TopicPlan:
    """One topic's verdict: ``create`` (missing), ``ok`` or ``differs``."""

    spec: TopicSpec
    existing: ExistingTopic | None
    differences: list[str] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)

    @property
    def action(self) -> str:
        if self.existing is None:
            return "create"
        return "differs" if self.differences or self.contradictions else "ok"

    def as_json(self) -> dict[str, Any]:
        existing = self.existing
        return {
            "role": self.spec.role, "name": self.spec.name, "action": self.action,
            "wanted": {"partitions": self.spec.partitions, "replication_factor": self.spec.replication_factor,
                       "config": dict(self.spec.config)},
            "existing": None if existing is None else {
                "partitions": existing.partitions, "replication_factor": existing.replication_factor,
                "config": None if existing.config is None else {
                    key: existing.value(key) for key in sorted({*self.spec.config, *KAFKA_DEFAULTS})}},
            "differences": self.differences, "contradictions": self.contradictions,
        }


# ---------------------------------------------------------------------------------------- specs
def _common(settings: Settings) -> dict[str, str]:
    if settings.topic_min_insync_replicas:
        return {"min.insync.replicas": str(settings.topic_min_insync_replicas)}
    return {}  # the broker's default


def _spec(settings: Settings, role: str, name: str, partitions_field: str, **config: str) -> TopicSpec:
    return TopicSpec(role, name, settings.partitions_of(partitions_field), env_name(partitions_field),
                     settings.topic_replication_factor, {**config, **_common(settings)})


def metadata_spec(settings: Settings, name: str) -> TopicSpec:
    return _spec(settings, "metadata", name, "metadata_partitions", **{
        "cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS),
        "max.message.bytes": str(METADATA_MAX_MESSAGE_BYTES)})


def verdicts_spec(settings: Settings, name: str) -> TopicSpec:
    return _spec(settings, "verdicts", name, "verdicts_partitions", **{
        "cleanup.policy": "compact", "retention.ms": "-1", "min.compaction.lag.ms": "60000"})


def tenant_specs(settings: Settings, tenant_id: str) -> list[TopicSpec]:
    """A tenant's topics in the per-tenant mode: its metadata topic and its verdicts topic."""
    return [metadata_spec(settings, settings.tenant_metadata_topic(tenant_id)),
            verdicts_spec(settings, settings.tenant_verdicts_topic(tenant_id))]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics every deployment has (in the per-tenant mode the shared verdicts topic stays empty)."""
    return [
        metadata_spec(settings, settings.topic_metadata),
        _spec(settings, "commands", settings.topic_commands, "commands_partitions", **{
            "cleanup.policy": "delete", "retention.ms": str(COMMANDS_RETENTION_MS)}),
        verdicts_spec(settings, settings.topic_verdicts),
        _spec(settings, "notifications", settings.topic_notifications, "notifications_partitions", **{
            "cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}),
        _spec(settings, "deadletter", settings.topic_deadletter, "deadletter_partitions", **{
            "cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}),
    ]


# ---------------------------------------------------------------------------------------- checks
def contradictions(spec: TopicSpec, existing: ExistingTopic) -> list[str]:
    """Why patchgate cannot run with ``existing`` as its ``spec.role`` topic (empty: it can)."""
    found = _size_contradictions(spec, existing)
    if existing.config is None:
        return [f"topic {spec.name} ({spec.role}): {reason}" for reason in found]
    if spec.role == "verdicts":
        found += _verdicts_contradictions(existing)
    if spec.role == "commands":
        found += _commands_contradictions(existing)
    return [f"topic {spec.name} ({spec.role}): {reason}" for reason in found]


def _size_contradictions(spec: TopicSpec, existing: ExistingTopic) -> list[str]:
    found = []
    if existing.partitions < spec.partitions:
        found.append(f"has {existing.partitions} partitions, fewer than the {spec.partitions} of "
                     f"{spec.partitions_setting} (the consumer group could not use them all)")
    if existing.replication_factor < spec.replication_factor:
        found.append(f"replication factor {existing.replication_factor} is below "
                     f"PATCHGATE_TOPIC_REPLICATION_FACTOR={spec.replication_factor}")
    if existing.config is None:
        return found
    wanted_isr = int(spec.config.get("min.insync.replicas", "1"))
    isr = _as_int(existing.value("min.insync.replicas"))
    if isr is None or isr < wanted_isr:
        found.append(f"min.insync.replicas is {existing.value('min.insync.replicas')}, below "
                     f"PATCHGATE_TOPIC_MIN_INSYNC_REPLICAS={wanted_isr}")
    elif isr > existing.replication_factor:
        found.append(f"min.insync.replicas={isr} is above its replication factor "
                     f"{existing.replication_factor}: no acks=all write can succeed")
    return found


def _verdicts_contradictions(existing: ExistingTopic) -> list[str]:
    policy = _policies(existing.value("cleanup.policy"))
    if "compact" not in policy:
        return [f"cleanup.policy={','.join(sorted(policy))}, patchgate needs compact "
                "(the latest verdict of every server must stay readable)"]
    if "delete" in policy and existing.value("retention.ms") != "-1":
        return [f"cleanup.policy=compact,delete with retention.ms={existing.value('retention.ms')}: "
                "verdicts would be deleted, patchgate needs compact only (or retention.ms=-1)"]
    return []


def _commands_contradictions(existing: ExistingTopic) -> list[str]:
    found = []
    policy = _policies(existing.value("cleanup.policy"))
    if "compact" in policy:
        found.append("cleanup.policy includes compact: older commands of a tenant would be dropped, "
                     "patchgate needs delete")
    retention = _as_int(existing.value("retention.ms"))
    if retention is None or 0 <= retention < COMMANDS_RETENTION_MS:
        found.append(f"retention.ms={existing.value('retention.ms')} is shorter than the "
                     f"{COMMANDS_RETENTION_MS} ms ({COMMANDS_RETENTION_MS // DAY_MS} days) commands must be kept "
                     "(their ids are remembered and replays read them)")
    if existing.value("retention.bytes") != "-1":
        found.append(f"retention.bytes={existing.value('retention.bytes')}: commands could be deleted by size, "
                     "patchgate needs -1")
    return found


def differences(spec: TopicSpec, existing: ExistingTopic) -> list[str]:
    """Configurations that differ from what patchgate would create, contradicting or not."""
    found = []
    if existing.partitions != spec.partitions:
        found.append(f"partitions {existing.partitions}, patchgate creates {spec.partitions}")
    if existing.replication_factor != spec.replication_factor:
        found.append(f"replication factor {existing.replication_factor}, patchgate creates "
                     f"{spec.replication_factor}")
    if existing.config is None:
        return [*found, "configs not checked: the brokers refused to describe them (DescribeConfigs not granted)"]
    for key, wanted in spec.config.items():
        actual = existing.value(key)
        if actual != wanted:
            found.append(f"{key}={actual}, patchgate creates {key}={wanted}")
    return found


def _policies(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


def _as_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------- brokers
def _admin(settings: Settings) -> AdminClient:
    # log_level 4: warnings and errors only; at the default (6) destroying the client prints an info
    # line ("Purging 1 unserved events from background queue") on the caller's console
    return clients.admin(settings.kafka, {"log_level": 4})


def describe(admin: AdminClient, names: Sequence[str], timeout: float = 30.0) -> dict[str, ExistingTopic]:
    """The topics among ``names`` that exist, as the brokers report them."""
    metadata = admin.list_topics(timeout=timeout).topics
    present = [name for name in names if name in metadata and metadata[name].error is None]
    if not present:
        return {}
    configs = _describe_configs(admin, present, timeout)
    found = {}
    for name in present:
        partitions = metadata[name].partitions.values()
        found[name] = ExistingTopic(name, len(partitions), min((len(p.replicas) for p in partitions), default=0),
                                    configs[name])
    return found


def _describe_configs(admin: AdminClient, names: Sequence[str], timeout: float) -> dict[str, dict[str, str] | None]:
    """Each topic's configs (None: not authorised). A broker that does not know a topic yet (just
    created, its metadata not there yet) is asked again until ``timeout``."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, str] | None] = {}
    pending = list(names)
    while pending:
        futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name) for name in pending],
                                         request_timeout=timeout)
        for resource, future in futures.items():
            with contextlib.suppress(_NotYetKnown):
                found[resource.name] = _configs(future, timeout, retry=time.monotonic() < deadline)
        pending = [name for name in pending if name not in found]
        if pending:
            time.sleep(0.1)  # polling until the brokers' metadata has the topics
    return found


class _NotYetKnown(PatchgateError):
    """The broker asked does not know the topic yet."""


def _configs(future: Any, timeout: float, retry: bool) -> dict[str, str] | None:
    """A topic's configs, or None when the brokers do not authorise describing them."""
    try:
        entries = future.result(timeout=timeout)
    except KafkaException as error:
        if "AUTHORIZATION" in error.args[0].name():
            return None
        if retry and error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise _NotYetKnown from None
        raise
    return {key: entry.value for key, entry in entries.items() if entry.value is not None}


def plan(settings: Settings, timeout: float = 30.0, tenants: Sequence[str] = ()) -> list[TopicPlan]:
    """Every topic patchgate uses, compared; in the per-tenant mode with both topics of every tenant
    whose metadata topic the brokers hold, and of ``tenants``."""
    admin = _admin(settings)
    specs = topic_specs(settings)
    if settings.per_tenant_topics:
        known = [_tenant_of(settings, name) for name in _tenant_topics(admin, settings, timeout)]
        specs += [spec for tenant in sorted({*known, *_checked_tenants(settings, tenants)})
                  for spec in tenant_specs(settings, tenant)]
    existing = describe(admin, [spec.name for spec in specs], timeout)
    return [_compare(spec, existing.get(spec.name)) for spec in specs]


def _tenant_of(settings: Settings, metadata_topic: str) -> str:
    return metadata_topic[len(settings.topic_metadata) + 1:]


def _checked_tenants(settings: Settings, tenants: Sequence[str]) -> list[str]:
    """``tenants``, each checked against ``PATCHGATE_METADATA_TENANT_PATTERN`` (ValueError otherwise)."""
    pattern = re.compile(settings.metadata_topic_pattern)
    bad = [tenant for tenant in tenants if not pattern.match(settings.tenant_metadata_topic(tenant))]
    if bad:
        raise ValueError(f"not a tenant id (PATCHGATE_METADATA_TENANT_PATTERN): {', '.join(map(repr, bad))}")
    return list(tenants)


def _compare(spec: TopicSpec, existing: ExistingTopic | None) -> TopicPlan:
    if existing is None:
        return TopicPlan(spec, None)
    return TopicPlan(spec, existing, differences(spec, existing), contradictions(spec, existing))


def group_members(settings: Settings, timeout: float = 5.0) -> int | None:
    """How many members the workers' consumer group has now; None when the brokers do not say in time
    (a cluster that never had a group creates its offsets topic, and has no coordinator, on first use)."""
    admin = _admin(settings)
    group = settings.consumer_group
    try:
        description = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(timeout=timeout)
    except (KafkaException, TimeoutError):
        return None
    return len(description.members)


def note_idle_members(topics: Sequence[TopicPlan], group: str, members: int | None) -> None:
    """Add a difference to the shared metadata topic when the group has more members than it has
    partitions: the extra workers get no partition (not a contradiction: they take over on failure)."""
    for topic in topics:
        if topic.spec.role != "metadata" or topic.existing is None or members is None:
            continue
        if members > topic.existing.partitions:
            topic.differences.append(
                f"consumer group {group} has {members} members for {topic.existing.partitions} partitions: "
                f"{members - topic.existing.partitions} get no partition")
        return  # the first metadata topic is the shared one


def require_no_contradictions(settings: Settings, timeout: float = 30.0) -> None:
    """Raise :class:`TopicsContradict` (one line per contradiction) if an existing topic contradicts."""
    found = [line for topic in plan(settings, timeout) for line in topic.contradictions]
    if found:
        raise TopicsContradict(found)


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the missing topics every deployment has; return the names created."""
    return _create_missing(settings, topic_specs(settings), timeout)


def ensure_tenant_topics(settings: Settings, tenants: Sequence[str], timeout: float = 30.0) -> list[str]:
    """Create the per-tenant metadata and verdicts topics of ``tenants`` that are missing; return the
    names created."""
    specs = [spec for tenant in _checked_tenants(settings, tenants) for spec in tenant_specs(settings, tenant)]
    return _create_missing(settings, specs, timeout)


def known_tenants(settings: Settings, timeout: float = 30.0) -> list[str]:
    """The tenants whose per-tenant metadata topic the brokers hold, sorted."""
    return [_tenant_of(settings, name) for name in tenant_topics(settings, timeout)]


def serving_tenant_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """The tenant metadata topics a per-tenant worker may consume: those whose tenant has a verdicts
    topic. A missing verdicts topic is created first; a tenant whose verdicts topic cannot be created
    (no Create ACL, a broker refusal) is left out and logged, so its verdicts can never hold up the
    publication of the others'; it is retried at the next look (the caller's interval)."""
    admin = _admin(settings)
    present = set(admin.list_topics(timeout=timeout).topics)
    pattern = re.compile(settings.metadata_topic_pattern)
    serving = []
    for name in sorted(name for name in present if pattern.match(name)):
        spec = verdicts_spec(settings, settings.tenant_verdicts_topic(_tenant_of(settings, name)))
        if spec.name not in present:
            try:
                _create_missing(settings, [spec], timeout)
            except (TopicsNotCreated, KafkaException) as error:
                log.warning("tenant topic %s not consumed yet: its verdicts topic %s is missing and could not "
                            "be created: %s", name, spec.name, error)
                continue
        serving.append(name)
    return serving


def tenant_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """The per-tenant metadata topics the broker holds, sorted."""
    return _tenant_topics(clients.admin(settings.kafka), settings, timeout)


def _tenant_topics(admin: AdminClient, settings: Settings, timeout: float) -> list[str]:
    pattern = re.compile(settings.metadata_topic_pattern)
    return sorted(name for name in admin.list_topics(timeout=timeout).topics if pattern.match(name))


def _create_missing(settings: Settings, specs: list[TopicSpec], timeout: float) -> list[str]:
    admin = _admin(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [spec.new_topic() for spec in specs if spec.name not in existing]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as error:
            if error.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: another worker won the race
                raise TopicsNotCreated(f"topic {name} could not be created: {error.args[0].str()}") from None
    _wait_until_visible(settings, admin, {spec.topic: spec.num_partitions for spec in missing}, timeout)
    return created


def _wait_until_visible(settings: Settings, admin: AdminClient, partitions: Mapping[str, int],
                        timeout: float) -> None:
    """Poll every broker's metadata until each shows the new topics with all partitions led.

    A topic the controller created reaches the brokers' metadata a moment later; a client (the next
    command, the worker's check) that asked a lagging broker would find it missing. After
    ``timeout`` the topics exist all the same: a warning, not an error."""
    deadline = time.monotonic() + timeout
    brokers = admin.list_topics(timeout=timeout).brokers
    while not all(_broker_sees(settings, broker_id, f"{broker.host}:{broker.port}", partitions)
                  for broker_id, broker in brokers.items()):
        if time.monotonic() >= deadline:
            log.warning("topics created but not yet seen by every broker after %.0fs: %s", timeout,
                        ", ".join(sorted(partitions)))
            return
        time.sleep(0.1)  # polling the brokers' metadata


def _broker_sees(settings: Settings, broker_id: int, address: str, partitions: Mapping[str, int]) -> bool:
    """Whether broker ``broker_id`` shows the topics, asked through a client bootstrapped with it alone
    (a client may answer from another broker it learnt of: such answers are not counted; a broker
    unreachable counts as not showing them, until the caller's deadline)."""
    one = clients.admin(dataclasses.replace(settings.kafka, bootstrap=address), {"log_level": 0})
    for _ in range(3):
        try:
            metadata = one.list_topics(timeout=5.0)
        except KafkaException:
            return False
        if metadata.orig_broker_id == broker_id:
            return all(_visible(metadata.topics.get(name), count) for name, count in partitions.items())
    return True  # the broker cannot be asked alone (a proxy in front of the cluster): not waited for


def _visible(topic: Any, partitions: int) -> bool:
    return (topic is not None and topic.error is None and len(topic.partitions) >= partitions
            and all(p.leader >= 0 for p in topic.partitions.values()))
