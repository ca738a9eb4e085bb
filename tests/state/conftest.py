"""The ``new_store`` fixture: the in-memory store, and the Redis store on the session's real Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from processors.state.keys import KeySchema
from processors.state.memory import MemoryStateStore
from processors.state.store import StateStore
from tests.state.contract import StoreFactory


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def new_store(request: pytest.FixtureRequest, unique_name: Callable[[str], str]) -> StoreFactory:
    keys = KeySchema(unique_name("pg"))
    if request.param == "memory":
        return lambda: MemoryStateStore(keys)
    url = request.getfixturevalue("redis_url")
    return lambda: StateStore.from_url(url, keys)
