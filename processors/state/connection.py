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
certificate); with ``rediss+sentinel://`` they hold for the sentinels and for the master alike.
For Sentinel, ``sentinel_password`` (and ``sentinel_username`` for an ACL user) when the sentinels
require a login of their own (the user and password in the URL are the Redis ACL user of the data
nodes); for one server or Sentinel,
``wait_replicas=<n>`` and ``wait_timeout_ms=<ms>`` (default 1000): a batch counts as done (its
Kafka offsets are committed) only once ``n`` replicas have its writes, see
:class:`processors.state.urls.ReplicationWait`. Credentials are percent-decoded. :func:`processors.state.urls.redacted`
gives the URL as logs may show it.

Every connection has the store's socket and connect timeouts; a Cluster client follows MOVED/ASK
redirections and a Sentinel client asks the sentinels for the master again after a connection
error, so callers see one ``StoreUnavailable`` during a failover and succeed when they retry. When
no sentinel names a master, the error is one line: each sentinel's address and why it failed
(plus a hint about ``rediss+sentinel://`` when a plain-text connection was refused).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
import redis.cluster
import redis.sentinel
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel

from processors.state.urls import CLUSTER_SCHEMES, SINGLE_SCHEMES, RedisTarget, check_url, parse_target, without_wait

PLAIN_TEXT_HINT = "(plain text: sentinels that listen on TLS only need rediss+sentinel://)"


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
    sentinel_class: Any = BlockingSentinel if blocking else AsyncSentinel
    sentinel = sentinel_class(target, timeouts)
    return sentinel.master_for(target.master, db=target.db, **auth, **target.tls_options())


class SentinelClient(aioredis.Redis):
    """An asyncio client of one sentinel, shown as its address (in "no master found" errors)."""

    def __repr__(self) -> str:
        options = self.connection_pool.connection_kwargs
        return f"sentinel {options['host']}:{options['port']}"


class BlockingSentinelClient(redis.Redis):
    """A blocking client of one sentinel, shown as its address."""

    def __repr__(self) -> str:
        options = self.connection_pool.connection_kwargs
        return f"sentinel {options['host']}:{options['port']}"


class AsyncSentinel(Sentinel):
    """redis-py's asyncio Sentinel for a parsed URL: TLS and logins for the sentinels and the master,
    one-line errors when no sentinel names the master."""

    def __init__(self, target: RedisTarget, timeouts: dict[str, Any]) -> None:
        super().__init__(list(target.nodes), sentinel_kwargs=sentinel_options(target, timeouts), **timeouts)
        self.sentinels = [SentinelClient(host=host, port=port, **self.sentinel_kwargs) for host, port in target.nodes]
        self.plain_text = not target.tls

    async def discover_master(self, service_name: str) -> Any:
        try:
            return await super().discover_master(service_name)
        except MasterNotFoundError as error:
            raise with_hint(error, self.plain_text) from error


class BlockingSentinel(redis.sentinel.Sentinel):
    """The blocking twin of :class:`AsyncSentinel`."""

    def __init__(self, target: RedisTarget, timeouts: dict[str, Any]) -> None:
        super().__init__(list(target.nodes), sentinel_kwargs=sentinel_options(target, timeouts), **timeouts)
        self.sentinels = [BlockingSentinelClient(host=host, port=port, **self.sentinel_kwargs)
                          for host, port in target.nodes]
        self.plain_text = not target.tls

    def discover_master(self, service_name: str) -> Any:
        try:
            return super().discover_master(service_name)
        except redis.sentinel.MasterNotFoundError as error:
            raise with_hint(error, self.plain_text) from error


def sentinel_options(target: RedisTarget, timeouts: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the clients of the sentinels: timeouts, TLS, their own login."""
    return {**timeouts, **target.sentinel_login(), **target.tls_options()}


def with_hint(error: Exception, plain_text: bool) -> Exception:
    """``error`` on one line, with :data:`PLAIN_TEXT_HINT` if a plain-text connection failed."""
    text = " ".join(str(error).split())
    if plain_text and "ConnectionError" in text:
        text = f"{text} {PLAIN_TEXT_HINT}"
    return type(error)(text)


def is_cluster(url: str) -> bool:
    return url.partition("://")[0] in CLUSTER_SCHEMES
