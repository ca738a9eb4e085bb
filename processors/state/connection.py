"""Redis connections from one URL: a single server, Redis Cluster or Sentinel, with TLS and ACL users.

==============================================================  =========================================
URL                                                             Connects to
==============================================================  =========================================
``redis://[user:password@]host:port[/db]``                      one server (``rediss://``: over TLS)
``unix:///path/to/redis.sock[?db=N]``                           one server on a unix socket
``redis+cluster://[user:password@]host:port[,host:port...]``    Redis Cluster, from these seed nodes
                                                                (``rediss+cluster://``: over TLS)
``redis+sentinel://[user:password@]host:port[,host:port...]``   the master that Sentinel names
``/<master-name>[/db]``                                         ``<master-name>``, followed across
                                                                failovers (``rediss+sentinel://``: TLS)
==============================================================  =========================================

Query parameters: ``ssl_ca_certs=<file>`` (the CA that signed the server certificates, for the
``rediss`` schemes; default: the system's CAs), ``ssl_certfile`` / ``ssl_keyfile`` (a client
certificate); for Sentinel, ``sentinel_password`` when the sentinels require one of their own (the
user and password in the URL are the Redis ACL user of the data nodes); for one server or Sentinel,
``wait_replicas=<n>`` and ``wait_timeout_ms=<ms>`` (default 1000): a batch counts as done (its
Kafka offsets are committed) only once ``n`` replicas have its writes, see
:class:`processors.state.urls.ReplicationWait`. Credentials are percent-decoded. :func:`processors.state.urls.redacted`
gives the URL as logs may show it.

Every connection has the store's socket and connect timeouts; a Cluster client follows MOVED/ASK
redirections and a Sentinel client asks the sentinels for the master again after a connection
error, so callers see one ``StoreUnavailable`` during a failover and succeed when they retry.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
import redis.cluster
import redis.sentinel
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.sentinel import Sentinel

from processors.state.urls import CLUSTER_SCHEMES, SINGLE_SCHEMES, check_url, parse_target, without_wait


def connect(url: str, socket_timeout: float, connect_timeout: float, *, blocking: bool = False) -> Any:
    """A client for ``url``: ``Redis``, ``RedisCluster``, or the master named by Sentinel; asyncio
    clients unless ``blocking``."""
    check_url(url)
    scheme = url.partition("://")[0]
    timeouts: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    if scheme in SINGLE_SCHEMES:
        return (redis.Redis if blocking else aioredis.Redis).from_url(without_wait(url), **timeouts)
    target = parse_target(url)
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if scheme in CLUSTER_SCHEMES:
        node: Any = redis.cluster.ClusterNode if blocking else ClusterNode
        cluster: Any = redis.RedisCluster if blocking else aioredis.RedisCluster
        return cluster(startup_nodes=[node(host, port) for host, port in target.nodes], **auth, **timeouts,
                       **target.tls_options())
    sentinel_auth = {"password": target.query["sentinel_password"]} if "sentinel_password" in target.query else {}
    sentinel_class: Any = redis.sentinel.Sentinel if blocking else Sentinel
    sentinel = sentinel_class(
        list(target.nodes), sentinel_kwargs={**timeouts, **sentinel_auth, **target.tls_options()}, **timeouts)
    return sentinel.master_for(target.master, db=target.db, **auth, **target.tls_options())


def is_cluster(url: str) -> bool:
    return url.partition("://")[0] in CLUSTER_SCHEMES
