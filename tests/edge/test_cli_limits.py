"""The edge CLI's settings: flags, environment, defaults, old names, bad values."""

from __future__ import annotations

import argparse
import logging

import pytest

from edge.cli import _limits, edge_settings, register
from edge.settings import MILTER_IDLE_S, POLICY_IDLE_S


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["edge", *argv])


def test_defaults_suit_postfix() -> None:
    settings = edge_settings(parse("milter"), {})
    milter = _limits(settings, settings.idle_timeout(MILTER_IDLE_S))
    policy = _limits(settings, settings.edge_policy_idle_timeout)
    assert (milter.idle_timeout, policy.idle_timeout) == (900.0, 330.0)
    assert milter.max_connections == 512 and milter.max_reply_buffer == 65536
    assert settings.socket_mode == 0o660 and settings.edge_publish
    assert settings.kafka_bootstrap == "127.0.0.1:9092"


def test_flags_win_over_environment() -> None:
    env = {"PATCHGATE_EDGE_MAX_CONNECTIONS": "7", "PATCHGATE_EDGE_IDLE_TIMEOUT": "12.5",
           "PATCHGATE_KAFKA_BOOTSTRAP": "env:9092"}
    settings = edge_settings(parse("policy"), env)
    assert (settings.edge_max_connections, settings.idle_timeout(POLICY_IDLE_S)) == (7, 12.5)
    settings = edge_settings(parse("policy", "--max-connections", "3", "--idle-timeout", "0",
                                   "--bootstrap", "flag:9092", "--listen", "inet:127.0.0.1:0"), env)
    assert (settings.edge_max_connections, settings.idle_timeout(POLICY_IDLE_S)) == (3, 0.0)
    assert settings.kafka_bootstrap == "flag:9092" and settings.kafka.bootstrap == "flag:9092"
    assert settings.edge_policy_listen == "inet:127.0.0.1:0"
    assert edge_settings(parse("milter", "--no-publish"), {}).edge_publish is False


def test_old_names_still_work_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    import processors.settings as settings_module

    settings_module._warned.discard("PATCHGATE_EDGE_VERDICTS_TOPIC")
    env = {"PATCHGATE_EDGE_KAFKA_BOOTSTRAP": "old:9092", "PATCHGATE_EDGE_VERDICTS_TOPIC": "old.verdicts",
           "PATCHGATE_TOPIC_METADATA": "new.metadata", "PATCHGATE_EDGE_METADATA_TOPIC": "old.metadata"}
    with caplog.at_level(logging.WARNING, logger="processors.settings"):
        settings = edge_settings(parse("milter"), env)
        edge_settings(parse("milter"), env)
    assert (settings.kafka_bootstrap, settings.topic_verdicts) == ("old:9092", "old.verdicts")
    assert settings.topic_metadata == "new.metadata"  # the one name wins over the old one
    warnings = [r.getMessage() for r in caplog.records if "PATCHGATE_EDGE_VERDICTS_TOPIC" in r.getMessage()]
    assert warnings == ["PATCHGATE_EDGE_VERDICTS_TOPIC is deprecated and will be ignored in the next release: "
                        "use PATCHGATE_TOPIC_VERDICTS"]  # once, though read twice


@pytest.mark.parametrize(("env", "value", "message"), [
    ("EDGE_MAX_CONNECTIONS", "many", "PATCHGATE_EDGE_MAX_CONNECTIONS: expected a number, got 'many'"),
    ("EDGE_MAX_CONNECTIONS", "0", "PATCHGATE_EDGE_MAX_CONNECTIONS: must be 1..1000000"),
    ("EDGE_MAX_REPLY_BUFFER", "10", "PATCHGATE_EDGE_MAX_REPLY_BUFFER: must be 1024.."),
    ("EDGE_SOCKET_MODE", "rw", "PATCHGATE_EDGE_SOCKET_MODE: expected permission bits"),
    ("EDGE_POLICY_MODE", "sendmail", "PATCHGATE_EDGE_POLICY_MODE: must be one of postfix, exim"),
    ("EDGE_PUBLISH", "maybe", "PATCHGATE_EDGE_PUBLISH: expected 1/0"),
    ("TOPIC_VERDICTS", "no spaces", "PATCHGATE_TOPIC_VERDICTS: is not a valid Kafka topic name"),
])
def test_bad_values_exit_with_a_clear_message(env: str, value: str, message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        edge_settings(parse("milter"), {f"PATCHGATE_{env}": value})
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_socket_mode_is_octal() -> None:
    assert edge_settings(parse("milter", "--socket-mode", "0640"), {}).socket_mode == 0o640
