"""The outbox backlog, for ``patchgate_outbox_claims`` and ``patchgate_outbox_claim_age_seconds``.

A verdict or notification is committed to Redis with its outbox record and published afterwards: the
publisher claims the outbox, waits for the broker's acknowledgement, then releases the claim. A claim
that lives far longer than one batch means publishing is stuck (broker away, a publisher that keeps
failing, a crashed claim the timer cannot recover). Every worker reads the backlog from Redis next to
the consumer lag (the values agree; alert on ``max``), so it keeps growing while the worker that holds
the claim is the one that is stuck. Only claims holding records count.
"""

from __future__ import annotations

import logging

from processors.metrics import OUTBOX_CLAIMS, OUTBOX_OLDEST_CLAIM
from processors.state.protocol import Store

log = logging.getLogger(__name__)


async def export_outbox_backlog(store: Store, now: float) -> tuple[int, float]:
    """Set both gauges from Redis; returns (claims waiting, the oldest one's age in seconds)."""
    claims = await store.abandoned_claims(now)  # every claim made before now that still holds records
    oldest = max(0.0, max((now - claimed_at for claimed_at, _ in claims), default=0.0))
    OUTBOX_CLAIMS.set(len(claims))
    OUTBOX_OLDEST_CLAIM.set(oldest)
    return len(claims), oldest


async def measure_outbox_backlog(store: Store, now: float) -> None:
    """:func:`export_outbox_backlog` for a timer: a Redis error is logged, the gauges keep their values."""
    try:
        await export_outbox_backlog(store, now)
    except Exception as error:  # the next run retries
        log.warning("could not measure the outbox backlog: %s", error)
