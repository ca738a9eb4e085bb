"""What contradicts patchgate in an existing topic, and what is only a difference (no broker)."""

from __future__ import annotations

from typing import Any

import pytest

from processors.kafka import clients, delivery
from processors.kafka.config import KafkaConfig
from processors.kafka.topics import (
    COMMANDS_RETENTION_MS,
    ExistingTopic,
    TopicPlan,
    TopicSpec,
    contradictions,
    differences,
    note_idle_members,
    topic_specs,
)
from processors.kafka.topics_cli import check_text, plan_text
from processors.settings import Settings, SettingsError


def replicated(**overrides: Any) -> Settings:
    return Settings.from_env({}, topic_replication_factor=3, topic_min_insync_replicas=2, **overrides)


def spec_of(settings: Settings, role: str) -> TopicSpec:
    return next(spec for spec in topic_specs(settings) if spec.role == role)


def as_created(spec: TopicSpec, **config: str) -> ExistingTopic:
    """The topic as patchgate would create it, with ``config`` changed."""
    return ExistingTopic(spec.name, spec.partitions, spec.replication_factor, {**spec.config, **config})


def test_specs_carry_replication_partitions_per_topic_and_min_insync_replicas() -> None:
    specs = {spec.role: spec for spec in topic_specs(replicated(verdicts_partitions=3, commands_partitions=1))}
    assert {role: spec.partitions for role, spec in specs.items()} == {
        "metadata": 8, "commands": 1, "verdicts": 3, "notifications": 8, "deadletter": 8}
    assert {spec.replication_factor for spec in specs.values()} == {3}
    assert {spec.config["min.insync.replicas"] for spec in specs.values()} == {"2"}
    assert specs["verdicts"].config["cleanup.policy"] == "compact"


def test_defaults_are_as_before_and_leave_min_insync_replicas_to_the_broker() -> None:
    specs = topic_specs(Settings.from_env({}))
    assert {(spec.partitions, spec.replication_factor) for spec in specs} == {(8, 1)}
    assert all("min.insync.replicas" not in spec.config for spec in specs)


def test_a_topic_as_created_has_no_contradiction_nor_difference() -> None:
    for spec in topic_specs(replicated()):
        assert contradictions(spec, as_created(spec)) == []
        assert differences(spec, as_created(spec)) == []


def test_verdicts_that_are_not_compacted_contradict() -> None:
    spec = spec_of(replicated(), "verdicts")
    [line] = contradictions(spec, as_created(spec, **{"cleanup.policy": "delete"}))
    assert line.startswith(f"topic {spec.name} (verdicts): cleanup.policy=delete, patchgate needs compact")
    [mixed] = contradictions(spec, as_created(spec, **{"cleanup.policy": "compact,delete", "retention.ms": "1000"}))
    assert "verdicts would be deleted" in mixed
    assert contradictions(spec, as_created(spec, **{"cleanup.policy": "compact,delete", "retention.ms": "-1"})) == []


def test_commands_kept_too_briefly_or_compacted_contradict() -> None:
    spec = spec_of(replicated(), "commands")
    week = as_created(spec, **{"retention.ms": str(7 * 86_400_000)})
    [short] = contradictions(spec, week)
    assert f"retention.ms=604800000 is shorter than the {COMMANDS_RETENTION_MS} ms (400 days)" in short
    assert contradictions(spec, as_created(spec, **{"retention.ms": "-1"})) == []
    compacted = contradictions(spec, as_created(spec, **{"cleanup.policy": "compact"}))
    assert any("includes compact" in line for line in compacted)
    by_size = contradictions(spec, as_created(spec, **{"retention.bytes": "1048576"}))
    assert by_size == [f"topic {spec.name} (commands): retention.bytes=1048576: commands could be deleted by size, "
                       "patchgate needs -1"]


def test_too_few_partitions_or_replicas_and_a_low_min_insync_replicas_contradict() -> None:
    spec = spec_of(replicated(), "metadata")
    small = ExistingTopic(spec.name, 4, 1, {k: v for k, v in spec.config.items() if k != "min.insync.replicas"})
    found = contradictions(spec, small)
    assert found == [
        f"topic {spec.name} (metadata): has 4 partitions, fewer than the 8 of PATCHGATE_METADATA_PARTITIONS "
        "(the consumer group could not use them all)",
        f"topic {spec.name} (metadata): replication factor 1 is below PATCHGATE_TOPIC_REPLICATION_FACTOR=3",
        f"topic {spec.name} (metadata): min.insync.replicas is 1, below PATCHGATE_TOPIC_MIN_INSYNC_REPLICAS=2",
    ]


def test_more_partitions_or_other_retention_only_differ() -> None:
    spec = spec_of(replicated(), "notifications")
    bigger = ExistingTopic(spec.name, 16, 3, {**spec.config, "retention.ms": "1000"})
    assert contradictions(spec, bigger) == []
    assert differences(spec, bigger) == ["partitions 16, patchgate creates 8",
                                         "retention.ms=1000, patchgate creates retention.ms=2592000000"]


def test_min_insync_replicas_above_the_replication_factor_contradicts() -> None:
    spec = spec_of(Settings.from_env({}), "deadletter")
    [line] = contradictions(spec, as_created(spec, **{"min.insync.replicas": "2"}))
    assert "min.insync.replicas=2 is above its replication factor 1" in line


def test_settings_refuse_min_insync_replicas_above_the_replication_factor() -> None:
    with pytest.raises(SettingsError, match="PATCHGATE_TOPIC_MIN_INSYNC_REPLICAS: must not exceed"):
        Settings.from_env({"PATCHGATE_TOPIC_REPLICATION_FACTOR": "2", "PATCHGATE_TOPIC_MIN_INSYNC_REPLICAS": "3"})
    with pytest.raises(SettingsError, match=r"PATCHGATE_VERDICTS_PARTITIONS: must be 0\.\.10000"):
        Settings.from_env({"PATCHGATE_VERDICTS_PARTITIONS": "-1"})


def test_patchgate_outputs_wait_for_every_in_sync_replica_whatever_their_caller_asks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def capture(kafka: KafkaConfig, own: dict[str, Any]) -> object:
        seen.append(own)
        return object()

    monkeypatch.setattr(clients, "producer", capture)
    delivery.KafkaOutput(KafkaConfig("127.0.0.1:1"), **{"acks": "1", "enable.idempotence": False})
    assert seen[0]["acks"] == "all"
    assert seen[0]["enable.idempotence"] is True


def test_configs_the_brokers_refuse_to_describe_are_reported_unchecked_not_contradicting() -> None:
    spec = spec_of(replicated(), "verdicts")
    hidden = ExistingTopic(spec.name, 8, 3, None)
    assert contradictions(spec, hidden) == []
    assert differences(spec, hidden)[-1] == ("configs not checked: the brokers refused to describe them "
                                             "(DescribeConfigs not granted)")
    assert contradictions(spec, ExistingTopic(spec.name, 8, 1, None)) == [
        f"topic {spec.name} (verdicts): replication factor 1 is below PATCHGATE_TOPIC_REPLICATION_FACTOR=3"]


def test_plan_text_shows_what_is_created_and_marks_contradictions() -> None:
    settings = replicated()
    verdicts, commands = spec_of(settings, "verdicts"), spec_of(settings, "commands")
    plans = [TopicPlan(commands, None),
             TopicPlan(verdicts, as_created(verdicts, **{"cleanup.policy": "delete"}))]
    plans[1].differences = differences(verdicts, plans[1].existing)  # type: ignore[arg-type]
    plans[1].contradictions = contradictions(verdicts, plans[1].existing)  # type: ignore[arg-type]
    assert plan_text(plans).splitlines() == [
        f"{commands.name} (commands): create",
        "  partitions=8 replication_factor=3 cleanup.policy=delete min.insync.replicas=2 retention.ms=34560000000",
        f"{verdicts.name} (verdicts): differs",
        f"  CONTRADICTION topic {verdicts.name} (verdicts): cleanup.policy=delete, patchgate needs compact "
        "(the latest verdict of every server must stay readable)",
        "  differs: cleanup.policy=delete, patchgate creates cleanup.policy=compact",
    ]
    assert check_text(plans) == plans[1].contradictions[0]
    assert check_text([TopicPlan(commands, None)]) == (
        "no contradiction in 0 existing topics; missing (a worker or `patchgate topics create` creates them): "
        f"{commands.name}")


def test_more_group_members_than_metadata_partitions_is_noted_not_contradicting() -> None:
    settings = replicated(metadata_partitions=4)
    metadata, commands = spec_of(settings, "metadata"), spec_of(settings, "commands")
    plans = [TopicPlan(metadata, as_created(metadata)), TopicPlan(commands, as_created(commands))]
    note_idle_members(plans, "patchgate-worker", 4)
    assert [plan.action for plan in plans] == ["ok", "ok"]
    note_idle_members(plans, "patchgate-worker", 6)
    assert plans[0].differences == [
        "consumer group patchgate-worker has 6 members for 4 partitions: 2 get no partition"]
    assert plans[0].contradictions == [] and plans[1].differences == []
