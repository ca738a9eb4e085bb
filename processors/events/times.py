"""The RFC 3339 UTC timestamps the contracts carry (``Z``, whole seconds or milliseconds)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(at: datetime | None) -> str | None:
    """``at`` in UTC to the second (``2026-11-28T09:15:02Z``); None stays None."""
    if at is None:
        return None
    utc = at.astimezone(UTC)
    if utc.year < 1000:  # strftime's %Y does not pad the year: keep its text there
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return utc.replace(microsecond=0, tzinfo=None).isoformat() + "Z"  # the same text, half strftime's time


def rfc3339_millis(at: datetime) -> str:
    """``at`` in UTC to the millisecond (``2026-11-28T09:15:02.123Z``)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
