"""The days on which a classification can change: the judgement calendar of a catalog and policy.

A build's (or another product's version's) status depends on the observation day only through
comparisons of that day with dates the catalogs and the policy hold: a release date (public by
then?), that date plus a grace period (aged past it?), an end of support or of Extended Security
Updates (past it?), a baseline's ``from`` date (in force?). Each such comparison can only flip
between two consecutive days where one of them is such a date, one day after it, or one day after
it plus a grace period. Those are the *turning days*; between two of them every classification
is the same for every build and version. So a cache may key classifications by the stretch of
days between turning days (an *epoch*) instead of by the day: one classification per server and
epoch instead of one per server and day, and no burst of misses at 00:00 UTC.

The dates and grace periods are collected from the loaded objects themselves (every ``date`` they
hold, every ``grace_days`` they set), not from a list of fields kept here, so a date added to a
catalog later is a turning day without anyone remembering to add it. The calendar is conservative:
a few turning days more than needed only cost a few cache misses. The tests hold it to
:func:`processors.classify.classify` on random builds, versions and days.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from datetime import date

#: the offsets (in days) after every date, besides each grace period plus one, at which a status may turn
_OFFSETS = (0, 1)


class JudgementCalendar:
    """The turning days of one catalog, product catalog and policy; :meth:`epoch` names the
    stretch of days a day falls in."""

    __slots__ = ("_turning",)

    def __init__(self, *sources: object) -> None:
        dates, graces = _dates_and_graces(sources)
        offsets = {*_OFFSETS, *(g + 1 for g in graces)}
        self._turning = sorted({d.toordinal() + o for d in dates for o in offsets})

    def epoch(self, day_ordinal: int) -> int:
        """The epoch of a day (``date.toordinal()``): equal for two days exactly when no turning
        day lies after the earlier and at or before the later."""
        return bisect_right(self._turning, day_ordinal)

    def span(self, day_ordinal: int) -> tuple[int | None, int | None]:
        """The first and last day (ordinals) of the epoch of a day; ``None`` where it is unbounded."""
        index = bisect_right(self._turning, day_ordinal)
        first = self._turning[index - 1] if index else None
        last = self._turning[index] - 1 if index < len(self._turning) else None
        return first, last


def _dates_and_graces(sources: tuple[object, ...]) -> tuple[set[date], set[int]]:
    """Every date held anywhere in ``sources`` and every ``grace_days`` set in them."""
    dates: set[date] = set()
    graces: set[int] = set()
    for value in _walk(sources):
        if isinstance(value, date):
            dates.add(value)  # a datetime is a date too: its day counts
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            grace = getattr(value, "grace_days", None)
            if isinstance(grace, int) and not isinstance(grace, bool):
                graces.add(grace)
    return dates, graces


def _walk(roots: tuple[object, ...]) -> Iterator[object]:
    """Every object reachable from ``roots`` through dataclass fields, mappings and collections, once."""
    seen: set[int] = set()
    stack: list[object] = list(roots)
    while stack:
        value = stack.pop()
        if id(value) in seen or isinstance(value, str | bytes | int | float | bool) or value is None:
            continue
        seen.add(id(value))
        yield value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            stack.extend(getattr(value, f.name) for f in dataclasses.fields(value))
        elif isinstance(value, Mapping):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, tuple | list | set | frozenset):
            stack.extend(value)
