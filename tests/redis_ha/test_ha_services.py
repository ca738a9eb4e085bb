"""The dev services of the Redis high-availability tests leave nothing behind: every node's and
the sentinel's temp folder and log (with TLS, the certificates too) are gone after ``close``, and
their processes with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.devservices.base import tcp_answers
from processors.devservices.redis_cluster import RedisCluster
from processors.devservices.redis_sentinel import RedisSentinelGroup
from processors.devservices.redis_server import RedisServer
from processors.devservices.redis_tls import RedisTlsServer

pytestmark = pytest.mark.integration


def folders_of(servers: list[RedisServer]) -> list[Path]:
    found = []
    for server in servers:
        assert server.workdir is not None and server._process is not None
        found += [server.workdir, server._process.log_path.parent]
    return found


def test_a_cluster_and_a_tls_server_close_without_leftovers() -> None:
    cluster, tls = RedisCluster(), RedisTlsServer()
    try:
        cluster.start()
        tls.start()
        assert tls.server is not None
        folders = [*folders_of([*cluster.nodes, tls.server]), tls.folder]
        ports = [node.port for node in cluster.nodes] + [tls.port]
        assert all(folder.is_dir() for folder in folders) and all(tcp_answers("127.0.0.1", p) for p in ports)
    finally:
        cluster.close()
        tls.close()
    assert not any(folder.exists() for folder in folders)
    assert not any(tcp_answers("127.0.0.1", port) for port in ports)


@pytest.mark.parametrize("tls", [False, True])
def test_a_sentinel_group_closes_without_leftovers(tls: bool) -> None:
    group = RedisSentinelGroup(tls=tls)
    try:
        group.start()
        assert group.current_master() == ("127.0.0.1", group.master.port)
        folders = [*folders_of([group.master, group.replica]), group.folder]
    finally:
        group.close()
    assert not any(folder.exists() for folder in folders)
    assert group.current_master() is None  # the sentinel is gone too
