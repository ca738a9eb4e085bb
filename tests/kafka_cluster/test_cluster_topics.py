"""Topics on a real 3-node Apache Kafka cluster: plan, create and check with replication factor 3 and
min.insync.replicas 2; hand-made topics that contradict patchgate stop ``check`` and the worker; a
node killed while the worker processes loses no verdict."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import NewTopic

from processors import cli
from processors.devservices.apache_kafka import ApacheKafkaCluster
from processors.devservices.worker_process import WorkerProcess, patchgate_executable
from processors.kafka import clients
from processors.kafka.topics import describe, ensure_topics
from processors.kafka.types import OFFSET_BEGINNING, TopicPartition
from processors.settings import Settings
from tests.worker.factories import metadata_event

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def cluster_settings(cluster: ApacheKafkaCluster, unique_name: Callable[[str], str], redis_url: str,
                     **overrides: Any) -> Settings:
    suffix = unique_name("c")
    return Settings.from_env({}, **{
        "kafka_bootstrap": cluster.bootstrap, "redis_url": redis_url,
        "topic_metadata": f"metadata.{suffix}", "topic_verdicts": f"verdicts.{suffix}",
        "topic_notifications": f"notifications.{suffix}", "topic_deadletter": f"deadletter.{suffix}",
        "topic_commands": f"commands.{suffix}", "consumer_group": f"worker-{suffix}", "key_prefix": f"pg-{suffix}",
        "topic_replication_factor": 3, "topic_min_insync_replicas": 2, "metadata_partitions": 6,
        "verdicts_partitions": 3, "commands_partitions": 2,
        "timer_interval_s": 0.1, "batch_max_wait_ms": 20, "session_timeout_ms": 6000,
        "web_port": 0, "metrics_port": 0, "outbox_recovery_s": 2.0, **overrides,
    })


def topics_command(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                   *args: str) -> tuple[int, str]:
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    code = cli.main(["topics", *args])
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err  # 2: a configuration or broker error
    return code, captured.out


def test_plan_create_check_with_replication_factor_3_and_min_insync_replicas_2(
        kafka_cluster: ApacheKafkaCluster, redis_url: str, unique_name: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = cluster_settings(kafka_cluster, unique_name, redis_url)
    code, out = topics_command(settings, monkeypatch, capsys, "plan", "--format", "json")
    plan = orjson.loads(out)
    assert code == 0
    assert [(t["role"], t["action"], t["wanted"]["partitions"], t["wanted"]["replication_factor"],
             t["wanted"]["config"]["min.insync.replicas"]) for t in plan["topics"]] == [
        ("metadata", "create", 6, 3, "2"), ("commands", "create", 2, 3, "2"), ("verdicts", "create", 3, 3, "2"),
        ("notifications", "create", 6, 3, "2"), ("deadletter", "create", 6, 3, "2")]

    code, out = topics_command(settings, monkeypatch, capsys, "create")
    assert code == 0
    assert f"{settings.topic_verdicts} (verdicts): created" in out
    admin = clients.admin(settings.kafka)
    held = describe(admin, [settings.topic_metadata, settings.topic_verdicts, settings.topic_commands])
    assert [(t.partitions, t.replication_factor, t.value("min.insync.replicas")) for t in held.values()] == [
        (6, 3, "2"), (3, 3, "2"), (2, 3, "2")]
    assert held[settings.topic_verdicts].value("cleanup.policy") == "compact"

    code, out = topics_command(settings, monkeypatch, capsys, "check")
    assert (code, out) == (0, "no contradiction in 5 existing topics\n")
    code, out = topics_command(settings, monkeypatch, capsys, "plan", "--format", "json")
    assert {t["action"] for t in orjson.loads(out)["topics"]} == {"ok"}


def test_contradicting_topics_fail_check_and_stop_the_worker(
        kafka_cluster: ApacheKafkaCluster, redis_url: str, unique_name: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = cluster_settings(kafka_cluster, unique_name, redis_url)
    admin = clients.admin(settings.kafka)
    by_hand = [NewTopic(settings.topic_verdicts, 3, 3, config={"cleanup.policy": "delete", "min.insync.replicas": "2"}),
               NewTopic(settings.topic_commands, 2, 1, config={"retention.ms": str(7 * 86_400_000)})]
    for future in admin.create_topics(by_hand).values():
        future.result(30)

    code, out = topics_command(settings, monkeypatch, capsys, "check")
    verdicts, commands = f"topic {settings.topic_verdicts} (verdicts)", f"topic {settings.topic_commands} (commands)"
    assert code == 1
    assert out.splitlines() == [
        f"{commands}: replication factor 1 is below PATCHGATE_TOPIC_REPLICATION_FACTOR=3",
        f"{commands}: min.insync.replicas is 1, below PATCHGATE_TOPIC_MIN_INSYNC_REPLICAS=2",
        f"{commands}: retention.ms=604800000 is shorter than the 34560000000 ms (400 days) commands must be kept "
        "(their ids are remembered and replays read them)",
        f"{verdicts}: cleanup.policy=delete, patchgate needs compact (the latest verdict of every server must "
        "stay readable)",
    ]
    code, out = topics_command(settings, monkeypatch, capsys, "check", "--format", "json")
    assert code == 1
    assert len(orjson.loads(out)["contradictions"]) == 4

    env = {**os.environ, **settings.to_env()}
    done = subprocess.run([*patchgate_executable(), "worker"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    refusals = [line for line in done.stderr.splitlines() if line.startswith("patchgate worker: topic ")]
    assert refusals == [f"patchgate worker: {line}" for line in orjson.loads(out)["contradictions"]]


def test_a_node_killed_while_the_worker_processes_loses_no_verdict(
        kafka_cluster: ApacheKafkaCluster, redis_url: str, unique_name: Callable[[str], str]) -> None:
    settings = cluster_settings(kafka_cluster, unique_name, redis_url)
    ensure_topics(settings)
    servers = [f"ex{i:02d}.contoso.com" for i in range(60)]
    worker = WorkerProcess(settings)
    worker.start()
    try:
        produce_events(settings, servers[:20], T0)
        first = wait_for_verdicts(settings, {f"contoso/{s}" for s in servers[:20]}, timeout=60)
        victim = leader_of(settings, settings.topic_verdicts)
        produce_events(settings, servers[20:40], T0 + timedelta(minutes=1))
        kafka_cluster.kill(victim)  # while the worker processes them
        assert not kafka_cluster.nodes[victim].running
        produce_events(settings, servers[40:], T0 + timedelta(minutes=2))  # to the two nodes left
        verdicts = wait_for_verdicts(settings, {f"contoso/{s}" for s in servers}, timeout=90)
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
        faust_topics = clients.admin(settings.kafka).list_topics(timeout=10).topics
        [leader_topic] = [t for name, t in faust_topics.items() if name.startswith(f"{settings.consumer_group}-__")]
        assert {len(p.replicas) for p in leader_topic.partitions.values()} == {3}  # Faust's own topic too
    finally:
        worker.stop()
        kafka_cluster.start_node(victim)
    assert first <= verdicts
    assert sorted(verdicts) == sorted(f"contoso/{s}" for s in servers)


def produce_events(settings: Settings, servers: list[str], at: datetime) -> None:
    producer = clients.producer(settings.kafka, {"acks": "all", "enable.idempotence": True,
                                                 "partitioner": "murmur2_random", "log_level": 3})
    for index, server in enumerate(servers):
        event = metadata_event(f"{server}-{at:%H%M}-{index}", at, server=server)
        producer.produce(settings.topic_metadata, key=f"contoso/{server}".encode(), value=orjson.dumps(event))
        producer.poll(0)
    assert producer.flush(60) == 0


def leader_of(settings: Settings, topic: str) -> int:
    """The index (0-based) of the node leading the topic's first partition."""
    metadata = clients.admin(settings.kafka).list_topics(topic, timeout=10)
    return int(metadata.topics[topic].partitions[0].leader) - 1


def wait_for_verdicts(settings: Settings, expected: set[str], timeout: float) -> set[str]:
    """Server keys of the verdicts on the topic, read until every expected one arrived (or the deadline)."""
    consumer = clients.consumer(settings.kafka, {"group.id": f"reader-{time.monotonic_ns()}", "log_level": 3,
                                                 "enable.auto.commit": False})
    partitions = consumer.list_topics(settings.topic_verdicts, timeout=10).topics[settings.topic_verdicts].partitions
    consumer.assign([TopicPartition(settings.topic_verdicts, p, OFFSET_BEGINNING) for p in partitions])
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while not expected <= seen and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            value = None if message is None or message.error() is not None else message.value()
            if value is not None:
                seen.add(orjson.loads(value)["server_key"])
    finally:
        consumer.close()
    assert expected <= seen, f"missing verdicts: {sorted(expected - seen)}"
    return seen


def test_a_replication_factor_above_the_brokers_fails_create_with_one_line(
        kafka_cluster: ApacheKafkaCluster, redis_url: str, unique_name: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = cluster_settings(kafka_cluster, unique_name, redis_url, topic_replication_factor=4)
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    code = cli.main(["topics", "create"])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith(f"patchgate topics create: topic {settings.topic_metadata} could not be created: ")
    assert "replication factor" in error.lower() and "Traceback" not in error
