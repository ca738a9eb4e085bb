"""Bytes in and out: every contract's events are compact JSON (orjson), checked when they are read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson


def encode_event(record: Mapping[str, Any]) -> bytes:
    """An event's wire bytes."""
    return orjson.dumps(record)


def decode_checked(data: bytes, check: Callable[[Any], None]) -> Any:
    """The JSON in ``data`` once ``check`` (a contract of :mod:`processors.contracts`) passed it.

    Raises ``orjson.JSONDecodeError`` or ``ContractError``."""
    record = orjson.loads(data)
    check(record)
    return record
