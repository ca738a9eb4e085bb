"""A bounded cache of the classifier's results by topmost Received hop and day.

Servers repeat: every message a server relays carries the same topmost hop (its ``by`` host, its
build, its TLS comment) but for the date after the ``;``. The classifier decides from that hop alone,
so :func:`processors.classify.received.stamp_cache_key` of it (the text without its trailing date)
and the day are a sound key for every result that hop decided by itself (see
:func:`processors.classify.classifier.classify` for which results those are). A hit is rebuilt
with the message's own hop text and lower hops, so it equals the uncached result field for field.

The cache holds at most ``size`` entries; when full, it starts again empty. Counters say how it is
used (hits, misses, entries stored and evicted), e.g. for a benchmark's or an operator's hit rate.
"""

from __future__ import annotations

from datetime import date
from typing import Generic, NamedTuple, TypeVar

#: Entries per (catalog, policy) pair: distinct sending servers times builds seen per day.
HOP_CACHE_SIZE = 4096

Value = TypeVar("Value")
HopKey = tuple[str, date]


class HopCacheStats(NamedTuple):
    """A snapshot of a :class:`HopCache`'s counters."""

    hits: int
    misses: int
    stored: int
    evictions: int
    entries: int
    size: int

    @property
    def hit_rate(self) -> float | None:
        """Hits per look-up, ``None`` before the first look-up."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None


class HopCache(Generic[Value]):
    """Results by ``(stamp key, day)``: at most ``size`` of them (a full cache starts again empty)."""

    __slots__ = ("_entries", "evictions", "hits", "misses", "size", "stored")

    def __init__(self, size: int = HOP_CACHE_SIZE) -> None:
        self.size = max(1, size)
        self._entries: dict[HopKey, Value] = {}
        self.hits = 0
        self.misses = 0
        self.stored = 0
        self.evictions = 0

    def get(self, key: HopKey) -> Value | None:
        """The cached result for ``key``, or ``None`` (each call counts as a hit or a miss)."""
        hit = self._entries.get(key)
        if hit is None:
            self.misses += 1
        else:
            self.hits += 1
        return hit

    def put(self, key: HopKey, value: Value) -> None:
        """Remember ``value`` for ``key``; a full cache is emptied first (every entry counts as evicted).

        Emptying costs O(1) per entry stored. Evicting the oldest entry one at a time from a dict
        would not: each removal leaves a hole at the front that finding the next oldest walks over.
        """
        entries = self._entries
        if len(entries) >= self.size and key not in entries:
            self.evictions += len(entries)
            entries.clear()
        entries[key] = value
        self.stored += 1

    def clear(self) -> None:
        """Forget every entry (the counters keep counting)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> HopCacheStats:
        return HopCacheStats(
            hits=self.hits, misses=self.misses, stored=self.stored, evictions=self.evictions,
            entries=len(self._entries), size=self.size,
        )
