"""The deployment settings: environment names, defaults, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.settings import EnvSettings, Settings, SettingsError


def test_defaults_and_environment_names() -> None:
    settings = Settings.from_env({"PATCHGATE_FETCH_MAX_WAIT_MS": "250", "PATCHGATE_TOPIC_METADATA": "edge.meta",
                                  "PATCHGATE_TIMER_INTERVAL_S": "0.5", "PATCHGATE_BATCH_MAX_WAIT_MS": ""})
    assert (settings.fetch_max_wait_ms, settings.topic_metadata, settings.timer_interval_s) == (250, "edge.meta", 0.5)
    assert settings.batch_max_wait_ms == 5  # empty means the default
    assert settings.policy_check_interval_s == 2.0
    assert Settings.from_env({"PATCHGATE_POLICY_CHECK_INTERVAL_S": "30"}).policy_check_interval_s == 30.0
    assert Settings.from_env({"PATCHGATE_KEY_PREFIX": "x"}, key_prefix="y").key_prefix == "y"  # overrides win


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("PATCHGATE_FETCH_MAX_WAIT_MS", "0", "PATCHGATE_FETCH_MAX_WAIT_MS: must be 1..10000"),
    ("PATCHGATE_BATCH_MAX_MESSAGES", "many", "PATCHGATE_BATCH_MAX_MESSAGES: expected a number, got 'many'"),
    ("PATCHGATE_REDIS_URL", "localhost:6379", "PATCHGATE_REDIS_URL: must start with redis://"),
    ("PATCHGATE_TOPIC_VERDICTS", "bad topic", "PATCHGATE_TOPIC_VERDICTS: is not a valid Kafka topic name"),
    ("PATCHGATE_KEY_PREFIX", "{pg}", "PATCHGATE_KEY_PREFIX: must be non-empty and contain no braces"),
    ("PATCHGATE_POLICY_FILE", "/nonexistent/policy.toml", "PATCHGATE_POLICY_FILE: is not a readable file"),
    ("PATCHGATE_POLICY_CHECK_INTERVAL_S", "0", "PATCHGATE_POLICY_CHECK_INTERVAL_S: must be 0.05..3600"),
])
def test_bad_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert str(caught.value).startswith(message)


def test_to_env_reads_back_as_the_same_settings(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("")
    settings = Settings.from_env({}, topic_verdicts="v.x", timer_interval_s=0.25, policy_file=policy, web_port=0)
    env = settings.to_env()
    assert env["PATCHGATE_TOPIC_VERDICTS"] == "v.x" and "PATCHGATE_CATALOG_FILE" not in env  # None: unset
    assert Settings.from_env(env) == settings


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.kafka_bootstrap = "elsewhere:9092"  # type: ignore[misc]


def test_every_component_reads_its_settings_the_same_way(tmp_path: Path) -> None:
    from edge.settings import EdgeSettings
    from processors.api.settings import ApiSettings
    from processors.notify.settings import NotifySettings

    webhooks = tmp_path / "notify.toml"
    api = ApiSettings.from_env({"PATCHGATE_API_PORT": "9090", "PATCHGATE_API_READ_TIMEOUT": "2.5"}, api_bind="::1")
    assert (api.api_port, api.api_bind, api.api_read_timeout, api.api_max_connections) == (9090, "::1", 2.5, 512)
    notify = NotifySettings.from_env({"PATCHGATE_NOTIFY_CONFIG": str(webhooks)})
    assert (notify.webhook_config, notify.notify_group) == (webhooks, "patchgate-notify")
    edge = EdgeSettings.from_env({"PATCHGATE_EDGE_PUBLISH": "false", "PATCHGATE_KAFKA_BOOTSTRAP": "k:9092"})
    assert edge.edge_publish is False and edge.kafka.bootstrap == "k:9092"
    assert EdgeSettings.from_env(edge.to_env()) == edge  # booleans too read back
    assert ApiSettings.from_env(api.to_env()) == api


@pytest.mark.parametrize(("component", "environ", "message"), [
    ("api", {"PATCHGATE_API_PORT": "70000"}, "PATCHGATE_API_PORT: must be 0..65535"),
    ("api", {"PATCHGATE_API_MAX_CONNECTIONS": "lots"}, "PATCHGATE_API_MAX_CONNECTIONS: expected a number"),
    ("notify", {}, "PATCHGATE_NOTIFY_CONFIG: no webhook configuration"),
    ("edge", {"PATCHGATE_EDGE_LOOP": "tokio"}, "PATCHGATE_EDGE_LOOP: expected 'uvloop' or 'asyncio'"),
    ("edge", {"PATCHGATE_KAFKA_CONFIG": "/nonexistent/client.properties"}, "PATCHGATE_KAFKA_CONFIG: "),
])
def test_component_settings_name_the_variable(component: str, environ: dict[str, str], message: str) -> None:
    from edge.settings import EdgeSettings
    from processors.api.settings import ApiSettings
    from processors.notify.settings import NotifySettings

    kinds: dict[str, type[EnvSettings]] = {"api": ApiSettings, "notify": NotifySettings, "edge": EdgeSettings}
    kind = kinds[component]
    with pytest.raises(SettingsError) as caught:
        kind.from_env(environ)
    assert str(caught.value).startswith(message)


def test_an_old_name_is_read_with_one_warning_and_the_new_name_wins(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import processors.settings as settings_module

    settings_module._warned.discard("PATCHGATE_EDGE_KAFKA_BOOTSTRAP")
    with caplog.at_level(logging.WARNING, logger="processors.settings"):
        old = Settings.from_env({"PATCHGATE_EDGE_KAFKA_BOOTSTRAP": "old:9092"})
        Settings.from_env({"PATCHGATE_EDGE_KAFKA_BOOTSTRAP": "old:9092"})
        new = Settings.from_env({"PATCHGATE_EDGE_KAFKA_BOOTSTRAP": "old:9092", "PATCHGATE_KAFKA_BOOTSTRAP": "new:9092"})
    assert (old.kafka_bootstrap, new.kafka_bootstrap) == ("old:9092", "new:9092")
    assert [r.getMessage() for r in caplog.records] == [
        "PATCHGATE_EDGE_KAFKA_BOOTSTRAP is deprecated and will be ignored in the next release: "
        "use PATCHGATE_KAFKA_BOOTSTRAP"]
