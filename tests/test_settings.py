"""The deployment settings: environment names, defaults, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.settings import Settings, SettingsError


def test_defaults_and_environment_names() -> None:
    settings = Settings.from_env({"PATCHGATE_FETCH_MAX_WAIT_MS": "250", "PATCHGATE_TOPIC_METADATA": "edge.meta",
                                  "PATCHGATE_TIMER_INTERVAL_S": "0.5", "PATCHGATE_BATCH_MAX_WAIT_MS": ""})
    assert (settings.fetch_max_wait_ms, settings.topic_metadata, settings.timer_interval_s) == (250, "edge.meta", 0.5)
    assert settings.batch_max_wait_ms == 5  # empty means the default
    assert Settings.from_env({"PATCHGATE_KEY_PREFIX": "x"}, key_prefix="y").key_prefix == "y"  # overrides win


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("PATCHGATE_FETCH_MAX_WAIT_MS", "0", "PATCHGATE_FETCH_MAX_WAIT_MS: must be 1..10000"),
    ("PATCHGATE_BATCH_MAX_MESSAGES", "many", "PATCHGATE_BATCH_MAX_MESSAGES: expected a number, got 'many'"),
    ("PATCHGATE_REDIS_URL", "localhost:6379", "PATCHGATE_REDIS_URL: must start with redis://"),
    ("PATCHGATE_TOPIC_VERDICTS", "bad topic", "PATCHGATE_TOPIC_VERDICTS: is not a valid Kafka topic name"),
    ("PATCHGATE_KEY_PREFIX", "{pg}", "PATCHGATE_KEY_PREFIX: must be non-empty and contain no braces"),
    ("PATCHGATE_POLICY_FILE", "/nonexistent/policy.toml", "PATCHGATE_POLICY_FILE: is not a readable file"),
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
