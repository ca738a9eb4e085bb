"""The ``new_store`` fixture: the in-memory store, and the Redis store on the session's real Redis,
on its real Redis Cluster, on its TLS-only Redis as an ACL user, and on a TLS-only Sentinel set (one
per test module) as ACL users of the servers and of the sentinel."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from processors.devservices.redis_sentinel import RedisSentinelGroup
from processors.state.keys import KeySchema
from processors.state.memory import MemoryStateStore
from processors.state.store import StateStore
from tests.services import started
from tests.state.contract import StoreFactory


@pytest.fixture(scope="module")
def redis_sentinel_tls() -> Iterator[RedisSentinelGroup]:
    """A master, a replica and a sentinel, all TLS only with ACL users: ``rediss+sentinel://``."""
    with started(RedisSentinelGroup(tls=True)) as group:
        yield group


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration),
                        pytest.param("cluster", marks=pytest.mark.integration),
                        pytest.param("tls", marks=pytest.mark.integration),
                        pytest.param("sentinel-tls", marks=pytest.mark.integration)])
def new_store(request: pytest.FixtureRequest, unique_name: Callable[[str], str]) -> StoreFactory:
    keys = KeySchema(unique_name("pg"))
    if request.param == "memory":
        return lambda: MemoryStateStore(keys)
    if request.param == "tls":
        url = request.getfixturevalue("redis_tls_server").url
    elif request.param == "sentinel-tls":
        url = request.getfixturevalue("redis_sentinel_tls").url
    else:
        url = request.getfixturevalue("redis_cluster_url" if request.param == "cluster" else "redis_url")
    return lambda: StateStore.from_url(url, keys)
