"""Kafka client logs through Python logging, with repeats summarised (the API and the notifier).

With no broker, librdkafka reports the same failed connection for as long as the broker is away:
twice a second from an idempotent producer (it retries on its own timer, whatever the reconnect
backoff), some twenty times a second from a consumer. A client configured with
``"logger": kafka_logger(name)`` logs through a logger whose :class:`RepeatedMessageFilter` lets each
distinct message through once per window and then says how many repeats it swallowed. A client hands
its log lines over only when it is polled, so a producer that may sit idle is polled by
:func:`poll_kafka_events` once a second (its queue of log lines stays short).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

DIGITS = re.compile(r"\d+")
DEFAULT_WINDOW_S = 60.0
MAX_DISTINCT = 256


@dataclass
class _Seen:
    since: float
    suppressed: int = 0


class RepeatedMessageFilter(logging.Filter):
    """Passes a message at most once per ``window_s`` seconds; numbers do not make messages distinct."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[int, str], _Seen] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, DIGITS.sub("#", record.getMessage()))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.since < self.window_s:
            seen.suppressed += 1
            return False
        self._seen.pop(key, None)
        self._seen[key] = _Seen(now)
        while len(self._seen) > MAX_DISTINCT:
            self._seen.pop(next(iter(self._seen)))
        if seen is not None and seen.suppressed:
            record.msg = (f"{record.getMessage()} (repeated {seen.suppressed} more times in the last "
                          f"{now - seen.since:.0f}s)")
            record.args = ()
        return True


def kafka_logger(name: str) -> logging.Logger:
    """The logger ``name`` with a :class:`RepeatedMessageFilter` (added once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RepeatedMessageFilter) for f in logger.filters):
        logger.addFilter(RepeatedMessageFilter())
    return logger


class Pollable(Protocol):
    def poll(self, timeout: float = ...) -> int: ...


async def poll_kafka_events(client: Pollable, stop: asyncio.Event, interval_s: float = 1.0) -> None:
    """Serve the client's queued log lines, errors and delivery reports until ``stop`` is set."""
    while not stop.is_set():
        client.poll(0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
