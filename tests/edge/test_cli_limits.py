"""The edge CLI's connection bounds and socket settings: flags, environment, defaults, bad values."""

from __future__ import annotations

import argparse

import pytest

from edge.cli import _limits, _setting, register


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["edge", *argv])


def test_defaults_suit_postfix(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IDLE_TIMEOUT", "POLICY_IDLE_TIMEOUT", "MAX_CONNECTIONS", "MAX_REPLY_BUFFER"):
        monkeypatch.delenv(f"PATCHGATE_EDGE_{name}", raising=False)
    args = parse("milter")
    milter = _limits(args, 900.0)
    policy = _limits(args, 330.0, "policy_idle_timeout", "POLICY_IDLE_TIMEOUT")
    assert (milter.idle_timeout, policy.idle_timeout) == (900.0, 330.0)
    assert milter.max_connections == 512 and milter.max_reply_buffer == 65536


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHGATE_EDGE_MAX_CONNECTIONS", "7")
    monkeypatch.setenv("PATCHGATE_EDGE_IDLE_TIMEOUT", "12.5")
    assert _limits(parse("policy"), 330.0).max_connections == 7
    limits = _limits(parse("policy", "--max-connections", "3", "--idle-timeout", "0"), 330.0)
    assert (limits.max_connections, limits.idle_timeout) == (3, 0.0)


@pytest.mark.parametrize(("env", "value", "message"), [
    ("MAX_CONNECTIONS", "many", "PATCHGATE_EDGE_MAX_CONNECTIONS: invalid value 'many'"),
    ("MAX_CONNECTIONS", "0", "connection limits out of range"),
    ("MAX_REPLY_BUFFER", "10", "connection limits out of range"),
])
def test_bad_values_exit_with_a_clear_message(monkeypatch: pytest.MonkeyPatch, env: str, value: str,
                                              message: str) -> None:
    monkeypatch.setenv(f"PATCHGATE_EDGE_{env}", value)
    with pytest.raises(SystemExit, match=message):
        _limits(parse("milter"), 900.0)


def test_socket_mode_is_octal() -> None:
    assert _setting(parse("milter", "--socket-mode", "0640"), "socket_mode", "SOCKET_MODE", "0660",
                    lambda text: int(text, 8)) == 0o640
