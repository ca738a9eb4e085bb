"""The ``new_store`` fixture: the in-memory store, and the Redis store on the session's real Redis,
on its real Redis Cluster and on its TLS-only Redis as an ACL user."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from processors.state.keys import KeySchema
from processors.state.memory import MemoryStateStore
from processors.state.store import StateStore
from tests.state.contract import StoreFactory


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration),
                        pytest.param("cluster", marks=pytest.mark.integration),
                        pytest.param("tls", marks=pytest.mark.integration)])
def new_store(request: pytest.FixtureRequest, unique_name: Callable[[str], str]) -> StoreFactory:
    keys = KeySchema(unique_name("pg"))
    if request.param == "memory":
        return lambda: MemoryStateStore(keys)
    if request.param == "tls":
        url = request.getfixturevalue("redis_tls_server").url
    else:
        url = request.getfixturevalue("redis_cluster_url" if request.param == "cluster" else "redis_url")
    return lambda: StateStore.from_url(url, keys)
