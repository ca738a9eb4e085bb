"""A Redis that lost its scripts (restart, Sentinel failover: the script cache is not replicated)
in the middle of a commit: the commit still lands whole, verdict and due time together."""

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
