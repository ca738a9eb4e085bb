"""The RFC 3339 UTC timestamps the contracts carry (``Z``, whole seconds or milliseconds)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(at: datetime | None) -> str | None:
    """``at`` in UTC to the second (``2026-11-28T09:15:02Z``); None stays None."""
    if at is None:
        return None
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_millis(at: datetime) -> str:
    """``at`` in UTC to the millisecond (``2026-11-28T09:15:02.123Z``)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
