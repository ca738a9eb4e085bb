"""Redis-only store paths: a Redis that lost its scripts (restart, Sentinel failover: the script
cache is not replicated) in the middle of a commit still gets the commit whole, verdict and due time
together; drained outbox names leave the pending set unless a writer refilled the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from processors.state.keys import DUE_SERVER, KeySchema, ServerField, due_member
from processors.state.store import StateStore
from tests.state.test_store_contract import SERVER, T0, commit

pytestmark = pytest.mark.integration


def test_a_commit_after_the_scripts_were_flushed_lands_whole(redis_url: str, unique_name: Callable[[str], str]
                                                              ) -> None:
    async def scenario() -> tuple[list[int], int, dict[str, str], float | None]:
        store = StateStore.from_url(redis_url, KeySchema(unique_name("pg")))
        await store.load_scripts()
        await store.client.script_flush()
        try:
            outbox = store.keys.server_outbox(SERVER)
            sequences, claimed = await store.commit([commit("f1")], [], [(SERVER, T0 + 600)], "verdicts",
                                                    claim=[outbox], now=T0)
            (state, _), = await store.server_states([SERVER])
            due = await store.client.zscore(store.keys.due, due_member(DUE_SERVER, SERVER))
            return sequences, len(claimed), state, due
        finally:
            await store.close()

    sequences, claimed, state, due = asyncio.run(scenario())
    assert sequences == [1] and claimed == 1
    assert state[ServerField.FINGERPRINT] == "f1" and state[ServerField.DUE_AT] == repr(T0 + 600)
    assert due == T0 + 600


@pytest.mark.parametrize("redis_kind", ["redis_url", "redis_cluster_url"])
def test_an_outbox_filled_while_its_name_was_being_dropped_stays_pending(
        redis_kind: str, request: pytest.FixtureRequest, unique_name: Callable[[str], str]) -> None:
    """The Cluster path of dropping drained names (the pending set is in another slot): a writer
    filled the outbox after it was seen empty, so the name goes back; a truly empty one stays out."""
    url = request.getfixturevalue(redis_kind)

    async def scenario() -> tuple[list[str], str]:
        store = StateStore.from_url(url, KeySchema(unique_name("pg")))
        await store.load_scripts()
        try:
            filled, empty = store.keys.server_outbox(SERVER), store.keys.server_outbox("contoso/ex02.contoso.com")
            await store.commit([commit("f1")], [], [], "verdicts")  # queued, not claimed
            await store.client.sadd(store.keys.outbox_pending, filled, empty)
            await store._forget_drained([filled, empty])  # both seen empty a moment ago
            return await store.pending_outboxes(), filled
        finally:
            await store.close()

    pending, filled = asyncio.run(scenario())
    assert pending == [filled]
