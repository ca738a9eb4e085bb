"""Clocks for time-driven work (stage transitions without new mail, notices, pause expiry).

Message-driven transitions use the events' own ``observed_at``; only the timer asks a clock.
``PATCHGATE_CLOCK=wall`` (default) uses the system time; ``PATCHGATE_CLOCK=redis`` reads epoch
seconds from the ``<p>:clock`` key, which a replay driver or a test moves forward, so a replayed
scenario gives the same verdicts every time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from processors.state.protocol import Store


class Clock(Protocol):
    async def now(self) -> datetime | None: ...


class WallClock:
    async def now(self) -> datetime | None:
        return datetime.now(UTC)


class StoreClock:
    """Scenario time kept in the state store; None until someone sets it (the timer then does nothing)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def now(self) -> datetime | None:
        epoch = await self.store.clock_now()
        return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None
