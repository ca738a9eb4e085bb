"""PATCHGATE_LOG_FORMAT: one JSON object per line with the context fields, secrets masked in both formats."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from processors.logsetup import JsonFormatter, LogFormatError, TextFormatter, log_format, logging_config, redact


def emit(formatter: logging.Formatter, message: str, *args: object, **extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("patchgate.test.logformat")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    try:
        logger.warning(message, *args, extra=extra)
    finally:
        logger.handlers = []
    return stream.getvalue()


def test_json_lines_carry_timestamp_level_component_message_and_context() -> None:
    line = emit(JsonFormatter("worker"), "verdict for %s", "mx1", tenant="contoso", server="contoso/mx1")
    assert line.count("\n") == 1
    entry = orjson.loads(line)
    assert entry["level"] == "WARNING" and entry["component"] == "worker"
    assert entry["message"] == "verdict for mx1"
    assert entry["tenant"] == "contoso" and entry["server"] == "contoso/mx1"
    assert entry["logger"] == "patchgate.test.logformat"
    assert entry["timestamp"].endswith("Z") and entry["timestamp"][10] == "T"


def test_an_exception_stays_inside_its_one_line() -> None:
    formatter = JsonFormatter("api")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert "\n" not in line
    assert "ValueError: bad" in orjson.loads(line)["exception"]


@pytest.mark.parametrize(("text", "hidden"), [
    ("connecting to rediss://patchgate:s3cr3t@redis:6380/0", "s3cr3t"),
    ("sasl.password=hunter2 sasl.username=pg", "hunter2"),
    ('webhook secret: "abc def"', "abc def"),
    ("Authorization: Bearer tok_123.456", "tok_123.456"),
    ("PATCHGATE_API_TOKENS=tenant-token", "tenant-token"),
])
def test_secrets_never_reach_a_line_in_either_format(text: str, hidden: str) -> None:
    assert hidden not in redact(text)
    assert hidden not in emit(TextFormatter(), text)
    assert hidden not in emit(JsonFormatter("edge"), text)


def test_plain_text_stays_readable() -> None:
    assert redact("verdict for contoso/mx1: stage 2") == "verdict for contoso/mx1: stage 2"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_the_format_variable_is_checked() -> None:
    assert log_format({}) == "text"
    assert log_format({"PATCHGATE_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(LogFormatError, match="PATCHGATE_LOG_FORMAT: must be one of text, json, got 'xml'"):
        log_format({"PATCHGATE_LOG_FORMAT": "xml"})


def test_the_dict_config_for_faust_uses_the_same_formatter() -> None:
    config = logging_config("worker", "INFO", {"PATCHGATE_LOG_FORMAT": "json"})
    formatter = config["formatters"]["patchgate"]
    assert formatter["()"] is JsonFormatter and formatter["component"] == "worker"
    assert config["root"]["level"] == logging.INFO


def test_every_command_refuses_an_unknown_format_before_it_starts() -> None:
    import subprocess
    import sys

    bad = subprocess.run([sys.executable, "-m", "processors.cli", "pauses", "--tenant", "contoso"],
                         env={"PATCHGATE_LOG_FORMAT": "yaml", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "PATCHGATE_LOG_FORMAT: must be one of text, json, got 'yaml'" in bad.stderr
