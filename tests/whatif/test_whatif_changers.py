"""What the simulator hands the worker: only records that can change a verdict (a server's first,
and each change of class or connector), every other record answered and counted without it; and
a record the worker would refuse is a listed skip, also among repeats."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from processors.whatif.simulate import Simulation
from processors.whatif.sources import Item
from processors.worker.inprocess import BatchStats, CheckedMessage
from tests.worker.factories import metadata_event

T0 = datetime(2026, 10, 5, 8, tzinfo=UTC)
VULNERABLE, CURRENT = "15.1.2507.39", "15.2.2562.53"


def history(*runs: tuple[str, str, int]) -> list[dict[str, Any]]:
    """Runs of (server, build, messages), ten minutes apart, one after the other."""
    records: list[dict[str, Any]] = []
    for server, build, count in runs:
        for _ in range(count):
            at = T0 + timedelta(minutes=10 * len(records))
            records.append(metadata_event(f"e{len(records):04d}", at, server=server, build=build))
    return records


def simulated(records: list[dict[str, Any]]) -> tuple[Any, list[str]]:
    """The prediction, and the event ids of the records the worker was handed, in order."""
    simulation = Simulation()
    handed: list[str] = []
    process_checked = simulation.worker.process_checked

    async def counting(messages: Sequence[CheckedMessage]) -> BatchStats:
        handed.extend(record["event_id"] for message in messages for record in message.records)
        return await process_checked(messages)

    simulation.worker.process_checked = counting  # type: ignore[method-assign]  # observed, not replaced
    prediction = asyncio.run(simulation.run(Item(f"r{n}", None, r) for n, r in enumerate(records)))
    return prediction, handed


def test_repeats_are_answered_and_counted_without_the_worker() -> None:
    records = history(("ex1.contoso.com", VULNERABLE, 300), ("ex2.contoso.com", VULNERABLE, 50),
                      ("ex1.contoso.com", CURRENT, 100), ("ex1.contoso.com", VULNERABLE, 40))
    prediction, handed = simulated(records)
    assert handed == ["e0000", "e0300", "e0350", "e0450"]  # each server's first, then each change of build
    assert prediction.records == 490 and prediction.skipped == 0
    ex1 = prediction.servers["contoso/ex1.contoso.com"]
    assert sum(ex1.totals()) == 440 and sum(prediction.servers["contoso/ex2.contoso.com"].totals()) == 50
    assert [change.stage for change in ex1.stages][:2] == [1, 0]  # detected, then remediated by the update
    assert ex1.stages[-1].stage >= 1  # and detected again after the regression


def test_a_repeat_the_worker_would_refuse_is_a_listed_skip() -> None:
    records = history(("ex1.contoso.com", VULNERABLE, 5))
    records[3]["client"]["ip"] = "2001:0db8::5"  # not canonical: the worker's admission refuses it
    prediction, handed = simulated(records)
    assert handed == ["e0000"]
    assert prediction.records == 4 and sum(prediction.servers["contoso/ex1.contoso.com"].totals()) == 4
    assert [(skip.where, skip.reason.split(":", 2)[:2]) for skip in prediction.skips] == [
        ("r3", ["refused by the worker", " client ip"])]


def test_records_out_of_order_within_the_window_are_simulated_in_order(monkeypatch: Any) -> None:
    """Blocks of 7 records reversed (as partitions read side by side interleave): with a window of
    20 records released in runs of 4, every record is put back in its place, so the prediction is
    the one of the sorted input, day by day; runs come both from a clean queue and with late records
    waiting."""
    from processors.whatif import simulate

    monkeypatch.setattr(simulate, "REORDER", 20)
    monkeypatch.setattr(simulate, "RELEASE_RUN", 4)
    records = history(("ex1.contoso.com", VULNERABLE, 300), ("ex2.contoso.com", VULNERABLE, 50),
                      ("ex1.contoso.com", CURRENT, 100), ("ex1.contoso.com", VULNERABLE, 40))
    shuffled = [record for start in range(0, len(records), 7) for record in reversed(records[start:start + 7])]
    assert shuffled != records
    expected, _ = simulated(records)
    prediction, _ = simulated(shuffled)
    assert prediction.records == 490 and prediction.skipped == 0
    for key, server in expected.servers.items():
        assert prediction.servers[key].days == server.days and prediction.servers[key].stages == server.stages
