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
certificate), and, for Sentinel, ``sentinel_password`` when the sentinels require one of their own
(the user and password in the URL are the Redis ACL user of the data nodes). Credentials are
percent-decoded. :func:`redacted` gives the URL as logs may show it.

Every connection has the store's socket and connect timeouts; a Cluster client follows MOVED/ASK
redirections and a Sentinel client asks the sentinels for the master again after a connection
error, so callers see one ``StoreUnavailable`` during a failover and succeed when they retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.cluster
import redis.sentinel
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.sentinel import Sentinel

SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
TLS_QUERY = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


class RedisUrlError(ValueError):
    """A Redis URL patchgate cannot use; its text never contains the password."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed Cluster or Sentinel URL (single-server URLs go to redis-py as they are)."""

    scheme: str
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    master: str = ""
    db: int = 0
    query: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def tls(self) -> bool:
        return self.scheme.startswith("rediss")

    def tls_options(self) -> dict[str, Any]:
        if not self.tls:
            return {}
        return {"ssl": True, **{name: self.query[name] for name in TLS_QUERY if name in self.query}}


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs, errors and reprs)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, slash, path = rest.partition("/")
    credentials, at, hosts = authority.rpartition("@")
    if not at:
        return url
    user, colon, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hosts}{slash}{path}"


def check_url(url: str) -> None:
    """Raise :class:`RedisUrlError` unless ``url`` is one of the forms in the module docstring."""
    scheme = url.partition("://")[0]
    if scheme in SINGLE_SCHEMES and "://" in url:
        return
    if scheme in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        parse_target(url)
        return
    schemes = ", ".join(f"{name}://" for name in SINGLE_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES)
    raise RedisUrlError(f"must start with one of {schemes}; got {redacted(url)!r}")


def parse_target(url: str) -> RedisTarget:
    """Parse a ``redis+cluster://`` or ``redis+sentinel://`` URL (and their ``rediss+`` forms)."""
    parts = urlsplit(url)
    shown = redacted(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    user, _, password = credentials.partition(":")
    nodes = tuple(_host_port(item, shown) for item in hosts.split(",") if item)
    if not nodes:
        raise RedisUrlError(f"no host:port in {shown!r}")
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    master, db = "", 0
    if parts.scheme in SENTINEL_SCHEMES:
        master, db = _master_and_db(parts.path, shown)
    return RedisTarget(parts.scheme, nodes, unquote(user) or None, unquote(password) or None, master, db, query)


def _host_port(item: str, shown: str) -> tuple[str, int]:
    host, colon, port = item.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RedisUrlError(f"{item!r} is not host:port in {shown!r}")
    return host.strip("[]"), int(port)


def _master_and_db(path: str, shown: str) -> tuple[str, int]:
    segments = [segment for segment in path.split("/") if segment]
    if not 1 <= len(segments) <= 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise RedisUrlError(f"a Sentinel URL ends in /<master-name>[/<db>]: {shown!r}")
    return unquote(segments[0]), int(segments[1]) if len(segments) == 2 else 0


def connect(url: str, socket_timeout: float, connect_timeout: float, *, blocking: bool = False) -> Any:
    """A client for ``url``: ``Redis``, ``RedisCluster``, or the master named by Sentinel; asyncio
    clients unless ``blocking``."""
    check_url(url)
    scheme = url.partition("://")[0]
    timeouts: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    if scheme in SINGLE_SCHEMES:
        return (redis.Redis if blocking else aioredis.Redis).from_url(url, **timeouts)
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
