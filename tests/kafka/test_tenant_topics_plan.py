"""``patchgate topics plan|create|check`` in the per-tenant topic mode, on the session's broker: each
tenant (known by its metadata topic, or named with ``--tenant``) has a compacted verdicts topic of its
own, created with the shared verdicts topic's configuration and checked like it."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from confluent_kafka.admin import NewTopic

from processors import cli
from processors.kafka import clients
from processors.kafka.topics import describe, metadata_spec
from processors.settings import Settings
from tests.worker.harness import isolated_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def per_tenant(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> Settings:
    return isolated_settings(kafka_bootstrap, redis_url, unique_name, metadata_topic_mode="per-tenant",
                             metadata_partitions=2)


def topics_command(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                   *args: str) -> tuple[int, str, str]:
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    code = cli.main(["topics", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tenant_rows(plan: dict, settings: Settings) -> list[tuple[str, str, str, str | None]]:
    """(role, name, action, cleanup.policy wanted) of the tenant topics in a JSON plan."""
    shared = {settings.topic_metadata, settings.topic_verdicts, settings.topic_commands, settings.topic_notifications,
              settings.topic_deadletter}
    return [(t["role"], t["name"], t["action"], t["wanted"]["config"].get("cleanup.policy"))
            for t in plan["topics"] if t["name"] not in shared]


def test_a_known_tenant_s_verdicts_topic_is_planned_created_and_checked(
        per_tenant: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = per_tenant
    contoso = settings.tenant_metadata_topic("contoso")  # made by other tooling, without its verdicts topic
    admin = clients.admin(settings.kafka)
    admin.create_topics([metadata_spec(settings, contoso).new_topic()])[contoso].result(30)
    contoso_verdicts = settings.tenant_verdicts_topic("contoso")

    code, out, _ = topics_command(settings, monkeypatch, capsys, "plan", "--format", "json")
    assert code == 0
    assert tenant_rows(orjson.loads(out), settings) == [
        ("metadata", contoso, "ok", "delete"), ("verdicts", contoso_verdicts, "create", "compact")]
    code, out, _ = topics_command(settings, monkeypatch, capsys, "check")
    assert (code, out.strip()) == (0, f"no contradiction in 6 existing topics; missing (a worker or `patchgate "
                                      f"topics create` creates them): {contoso_verdicts}")

    code, out, _ = topics_command(settings, monkeypatch, capsys, "create", "--tenant", "fabrikam")
    assert code == 0
    fabrikam, fabrikam_verdicts = settings.tenant_metadata_topic("fabrikam"), settings.tenant_verdicts_topic("fabrikam")
    created = [line.split(" ")[0] for line in out.splitlines() if line.endswith(": created")]
    assert sorted(created) == sorted([contoso_verdicts, fabrikam, fabrikam_verdicts])
    held = describe(admin, [contoso_verdicts, fabrikam_verdicts])
    assert {name: (topic.partitions, topic.value("cleanup.policy")) for name, topic in held.items()} == {
        contoso_verdicts: (2, "compact"), fabrikam_verdicts: (2, "compact")}
    code, out, _ = topics_command(settings, monkeypatch, capsys, "check")
    assert (code, out.strip()) == (0, "no contradiction in 9 existing topics")


def test_a_tenant_verdicts_topic_that_is_not_compacted_contradicts(
        per_tenant: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = per_tenant
    contoso, contoso_verdicts = settings.tenant_metadata_topic("contoso"), settings.tenant_verdicts_topic("contoso")
    admin = clients.admin(settings.kafka)
    for future in admin.create_topics([
            metadata_spec(settings, contoso).new_topic(),
            NewTopic(contoso_verdicts, 2, 1, config={"cleanup.policy": "delete", "retention.ms": "604800000"}),
    ]).values():
        future.result(30)
    code, out, _ = topics_command(settings, monkeypatch, capsys, "check")
    assert code == 1
    assert out.strip() == (f"topic {contoso_verdicts} (verdicts): cleanup.policy=delete, patchgate needs compact "
                           "(the latest verdict of every server must stay readable)")


@pytest.mark.parametrize(("mode", "tenant", "message"), [
    ("shared", "contoso", "--tenant needs the per-tenant topic mode (PATCHGATE_METADATA_TOPIC_MODE=per-tenant)"),
    ("per-tenant", "con toso", "not a tenant id (PATCHGATE_METADATA_TENANT_PATTERN): 'con toso'"),
])
def test_a_tenant_option_that_cannot_apply_is_one_line_and_exit_2(
        per_tenant: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        mode: str, tenant: str, message: str) -> None:
    settings = Settings.from_env(per_tenant.to_env(), metadata_topic_mode=mode)
    code, out, err = topics_command(settings, monkeypatch, capsys, "create", "--tenant", tenant)
    assert (code, out, err.splitlines()) == (2, "", [f"patchgate topics create: {message}"])
