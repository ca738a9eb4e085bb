"""The one logging set-up of every patchgate command: plain text, or one JSON object per line.

``PATCHGATE_LOG_FORMAT=json`` (default ``text``) makes every line of every component (worker, edge,
API, notifier, ...) a JSON object::

    {"timestamp": "2026-12-07T06:01:02.345Z", "level": "INFO", "component": "worker",
     "logger": "processors.worker.app", "message": "...", "tenant": "t1", "server": "mx1"}

``tenant`` and ``server`` appear when the call passes them (``log.info("...", extra={"tenant": t})``);
an exception adds ``exception`` (the formatted traceback). Both formats pass every message through
:func:`redact` first: passwords in URLs (``redis://user:secret@``), ``password=``/``secret=``/``token=``
assignments and bearer tokens never reach a log line.

:func:`setup_logging` configures the root logger; :func:`logging_config` is the same as a
``logging.config.dictConfig`` dictionary, for Faust's worker (which configures logging itself).
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from processors.errors import PatchgateError

FORMATS = ("text", "json")
CONTEXT_FIELDS = ("tenant", "server")  # record attributes (from ``extra``) copied into JSON lines
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?=@)", re.IGNORECASE)
_ASSIGNED = re.compile(r"(?P<head>\b[\w.-]*(?:password|passwd|secret|token)[\w.-]*\s*[=:]\s*)"
                       r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&}]+)", re.IGNORECASE)
_BEARER = re.compile(r"(?P<head>\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


class LogFormatError(PatchgateError, ValueError):
    """PATCHGATE_LOG_FORMAT names no known format."""


def redact(text: str) -> str:
    """``text`` with URL passwords, secret-looking assignments and bearer tokens masked."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _ASSIGNED.sub(lambda m: m.group("head") + MASK, text)
    return _BEARER.sub(lambda m: m.group("head") + MASK, text)


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """The format ``PATCHGATE_LOG_FORMAT`` names (``text`` when unset)."""
    raw = (environ if environ is not None else os.environ).get("PATCHGATE_LOG_FORMAT", "")
    value = raw.strip().lower() or "text"
    if value not in FORMATS:
        raise LogFormatError(f"PATCHGATE_LOG_FORMAT: must be one of {', '.join(FORMATS)}, got {raw!r}")
    return value


class TextFormatter(logging.Formatter):
    """The classic text line, redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp (UTC, RFC 3339), level, component, logger, message."""

    def __init__(self, component: str = "patchgate") -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "component": self.component,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = redact(str(value))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def formatter(component: str, environ: Mapping[str, str] | None = None) -> logging.Formatter:
    return JsonFormatter(component) if log_format(environ) == "json" else TextFormatter()


def logging_config(component: str, level: int | str = logging.INFO,
                   environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A ``dictConfig`` dictionary: the root logger at ``level`` writing the chosen format to stderr."""
    factory = JsonFormatter if log_format(environ) == "json" else TextFormatter
    arguments = {"component": component} if factory is JsonFormatter else {}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"patchgate": {"()": factory, **arguments}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "patchgate",
                                 "stream": "ext://sys.stderr"}},
        "root": {"level": _level(level), "handlers": ["default"]},
    }


def setup_logging(component: str, level: int | str = logging.INFO, environ: Mapping[str, str] | None = None) -> None:
    """Configure the root logger for ``component`` (replacing any handler set before)."""
    logging.config.dictConfig(logging_config(component, level, environ))


def _level(level: int | str) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else logging.INFO
