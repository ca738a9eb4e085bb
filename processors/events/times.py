"""The RFC 3339 UTC timestamps the contracts carry (``Z``, whole seconds or milliseconds)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

#: instants remembered with their text: an evaluation writes a few (stage starts at 00:00 UTC, the
#: time of the run) that thousands of servers share
TEXTS_KEPT = 4096


def rfc3339(at: datetime | None) -> str | None:
    """``at`` in UTC to the second (``2026-11-28T09:15:02Z``); None stays None."""
    if at is None:
        return None
    return _rfc3339(at)


@lru_cache(maxsize=TEXTS_KEPT)
def _rfc3339(at: datetime) -> str:
    """:func:`rfc3339` of an instant (equal instants in any zone hash alike and get one text)."""
    utc = at.astimezone(UTC)
    if utc.year < 1000:  # strftime's %Y does not pad the year: keep its text there
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return utc.replace(microsecond=0, tzinfo=None).isoformat() + "Z"  # the same text, half strftime's time


def rfc3339_millis(at: datetime) -> str:
    """``at`` in UTC to the millisecond (``2026-11-28T09:15:02.123Z``)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
