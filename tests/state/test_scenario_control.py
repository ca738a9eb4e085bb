"""The blocking scenario access of replay drivers and the demo, on a real Redis and a real Redis
Cluster (where SCAN and the deletes span every node)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from processors.state.connection import connect
from processors.state.keys import KeySchema
from processors.state.store import ScenarioControl

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("redis_kind", ["redis_url", "redis_cluster_url"])
def test_clock_progress_and_deleting_only_the_prefixes_keys(redis_kind: str, request: pytest.FixtureRequest,
                                                            unique_name: Callable[[str], str]) -> None:
    redis_url = request.getfixturevalue(redis_kind)
    keys, other = KeySchema(unique_name("pg")), KeySchema(unique_name("pg"))
    client = connect(redis_url, 5, 5, blocking=True)
    state = ScenarioControl(redis_url, keys)
    try:
        state.set_clock(1_793_000_000.25)
        client.hset(keys.progress, mapping={"metadata:0": 7, "timer": "1793000000.25"})
        for n in range(5):
            client.set(f"{keys.prefix}:junk:{n}", n)
        client.set(other.clock, "1")
        assert float(client.get(keys.clock) or b"") == 1_793_000_000.25
        assert state.progress() == {"metadata:0": "7", "timer": "1793000000.25"}
        assert state.delete_all(page=2) == 7  # clock, progress, five others: in pages of two
        assert list(client.scan_iter(match=f"{keys.prefix}:*")) == []
        assert client.get(other.clock) == b"1"
    finally:
        state.close()
        client.delete(other.clock)
        client.close()
