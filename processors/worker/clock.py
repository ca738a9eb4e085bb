"""Clocks for time-driven work (stage transitions without new mail, notices, pause expiry).

Message-driven transitions use the events' own ``observed_at``; only the timer asks a clock.
``PATCHGATE_CLOCK=wall`` (default) uses the system time; ``PATCHGATE_CLOCK=redis`` reads epoch
seconds from the ``<p>:clock`` key, which a replay driver or a test moves forward, so a replayed
scenario gives the same verdicts every time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import redis.asyncio as aioredis


class Clock(Protocol):
    async def now(self) -> datetime | None: ...


class WallClock:
    async def now(self) -> datetime | None:
        return datetime.now(UTC)


class RedisClock:
    """Scenario time kept in Redis; None until someone sets it (the timer then does nothing)."""

    def __init__(self, client: aioredis.Redis, key: str) -> None:
        self.client = client
        self.key = key

    async def now(self) -> datetime | None:
        raw = await self.client.get(self.key)
        return datetime.fromtimestamp(float(raw), UTC) if raw else None
