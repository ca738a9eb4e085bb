"""A server's records folded one by one as they are read (``processing._ServerFold``) give the
observation the batch's records sorted by (event time, event id) give: the evidence in that order
with each run of identical evidence reduced to its first record, the latest record (the last one read
among exact repeats), the first event time, every event id by day. Checked against that sort-based
definition on generated batches."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.classify import Classification, Connection, classify
from processors.worker.processing import BUILD_BEARING, RawMessage, _ServerFold, evidence_item
from tests.worker.factories import metadata_event

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
MESSAGE = RawMessage("metadata", 0, 0, b"contoso/ex01.contoso.com", b"{}")


def _classification(build: str) -> Classification:
    record = metadata_event("probe", T0, build=build)
    return classify([tuple(h) for h in record["headers"]], Connection(ip="203.0.113.10", helo=None), T0)  # type: ignore[misc]


BASE = _classification("15.1.2507.39")
KINDS = [BASE, replace(BASE), _classification("15.2.2562.53"), _classification("15.0.1497.48"),
         replace(BASE, status="not_exchange")]  # the same evidence twice as two objects; one without build


def _reference(records: list[tuple[datetime, str, Classification, dict[str, Any]]]) -> dict[str, Any]:
    """The observation by its definition: the records sorted by (event time, event id), stably."""
    ordered = sorted(records, key=lambda r: (r[0], r[1]))
    evidence, previous = [], None
    for at, _, c, _ in ordered:
        identity = (c.status, c.build, c.rule)
        if c.status in BUILD_BEARING and identity != previous:
            previous = identity
            evidence.append(evidence_item(c, at.timestamp()))
    by_day: dict[str, set[str]] = {}
    for _, event_id, _, event in records:
        by_day.setdefault(event["observed_at"][:10], set()).add(event_id)
    return {"evidence": evidence, "first_at": ordered[0][0].timestamp(), "last_at": ordered[-1][0].timestamp(),
            "latest_status": ordered[-1][2].status, "latest_helo": ordered[-1][3]["client"]["helo"], "by_day": by_day}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, len(KINDS) - 1)), min_size=1,
                max_size=25))
def test_folding_record_by_record_equals_sorting_the_batch(draws: list[tuple[int, int, int]]) -> None:
    records = []
    for n, (hours, event, kind) in enumerate(draws):
        at = T0 + timedelta(hours=hours * 7)  # some records share an event time, some a day
        record = metadata_event(f"e{event}", at, helo=f"h{n}.contoso.com")  # repeats of one event id too
        records.append((at, record["event_id"], KINDS[kind], record))
    fold = _ServerFold("contoso/ex01.contoso.com", "contoso", "ex01.contoso.com")
    for at, _, c, record in records:
        fold.messages.append(MESSAGE)
        fold.indexes.append(len(fold.indexes))
        fold.add(record, at, c)  # type: ignore[arg-type]
    obs = fold.observation()
    expected = _reference(records)
    assert obs.evidence == expected["evidence"]
    assert (obs.first_at, obs.last_at) == (expected["first_at"], expected["last_at"])
    assert (obs.latest["status"], obs.latest["helo"]) == (expected["latest_status"], expected["latest_helo"])
    assert {day: set(ids) for day, ids in obs.event_ids_by_day.items()} == expected["by_day"]
    assert fold.sources() == [(MESSAGE, i) for i in range(len(records))]
