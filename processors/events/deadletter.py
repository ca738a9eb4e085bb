"""``patchgate.deadletter/1``: an input record refused by a consumer, with where it came from and why.

:func:`dead_letter` is the one place the record's fields are spelled; the worker (bad metadata,
bad commands) and the notifier (bad notifications, failed webhooks) both build theirs with it.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import TypedDict

from processors.contracts import DEADLETTER_SCHEMA, contracts
from processors.events.times import rfc3339
from processors.events.wire import decode_checked

ORIGINAL_CAP = 256 * 1024  # bytes of the original value kept in a dead letter
REASON_CAP = 2000


class DeadLetterSource(TypedDict):
    topic: str
    partition: int
    offset: int
    key: str | None  # base64 of the Kafka key
    record_index: int | None  # position of the bad record inside a batch envelope


class DeadLetter(TypedDict):
    schema: str
    source: DeadLetterSource
    reason: str
    path: str | None
    original: str  # base64 of the value, cut at original_truncated_at
    original_size: int
    original_truncated_at: int | None
    dead_lettered_at: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def dead_letter(*, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                reason: str, at: datetime, path: str | None = None, record_index: int | None = None,
                ) -> DeadLetter:
    """The dead letter for the Kafka message at ``topic``/``partition``/``offset``; ``at`` is when."""
    original = value or b""
    truncated = len(original) > ORIGINAL_CAP
    return {
        "schema": DEADLETTER_SCHEMA,
        "source": {"topic": topic, "partition": partition, "offset": offset,
                   "key": _b64(key) if key is not None else None, "record_index": record_index},
        "reason": reason[:REASON_CAP] or "unknown",
        "path": path,
        "original": _b64(original[:ORIGINAL_CAP]),
        "original_size": len(original),
        "original_truncated_at": ORIGINAL_CAP if truncated else None,
        "dead_lettered_at": rfc3339(at) or "",
    }



def parse_dead_letter(data: bytes) -> DeadLetter:
    """A dead letter from its JSON; raises ``orjson.JSONDecodeError`` or ``ContractError``."""
    return decode_checked(data, contracts.deadletter)  # type: ignore[no-any-return]


def original_bytes(record: DeadLetter) -> bytes:
    """The (possibly cut) original value the dead letter holds."""
    return base64.b64decode(record["original"])
