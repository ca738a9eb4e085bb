"""Redis URLs: which forms patchgate accepts, how they parse, and how logs may show them.

No Redis client here (settings validate URLs without importing one); the forms and the client each
gives are described in :mod:`processors.state.connection`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

from processors.errors import PatchgateError

SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
TLS_QUERY = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
SENTINEL_QUERY = ("sentinel_username", "sentinel_password")  # the sentinels' own login, if they have one
WAIT_QUERY = ("wait_replicas", "wait_timeout_ms")  # patchgate's own: see replication_wait()
WAIT_TIMEOUT_MS_DEFAULT = 1000
_SECRET_QUERY = re.compile(r"(?<=[?&])([^=&#]*password[^=&#]*)=[^&#]*", re.IGNORECASE)


class RedisUrlError(PatchgateError, ValueError):
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

    def sentinel_login(self) -> dict[str, Any]:
        """redis-py keywords of the sentinels' own ACL user (``sentinel_username``) and password."""
        names = {"sentinel_username": "username", "sentinel_password": "password"}
        return {keyword: self.query[name] for name, keyword in names.items() if name in self.query}


def redacted(url: str) -> str:
    """``url`` with its passwords (user info, ``sentinel_password=``) replaced by ``***`` (for logs,
    errors and reprs)."""
    url = _SECRET_QUERY.sub(lambda match: f"{match.group(1)}=***", url)
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
    """Raise :class:`RedisUrlError` unless ``url`` is one of the forms in the module docstring, its
    TLS parameters belong to a TLS scheme and name readable files."""
    scheme = url.partition("://")[0]
    replication_wait(url)
    _check_tls_query(url)
    if scheme in SINGLE_SCHEMES and "://" in url:
        return
    if scheme in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        parse_target(url)
        return
    schemes = ", ".join(f"{name}://" for name in SINGLE_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES)
    raise RedisUrlError(f"must start with {schemes}; got {redacted(url)!r}")


def _check_tls_query(url: str) -> None:
    scheme = url.partition("://")[0]
    query = {name: values[-1] for name, values in parse_qs(urlsplit(url).query).items()}
    for name, value in query.items():
        if name.startswith("ssl_") and not scheme.startswith("rediss"):
            raise RedisUrlError(f"{name} is a TLS setting, but {scheme}:// is plain text (TLS: rediss://, "
                                f"rediss+cluster://, rediss+sentinel://): {redacted(url)!r}")
        if name in TLS_QUERY and not (os.path.isfile(value) and os.access(value, os.R_OK)):
            raise RedisUrlError(f"{name}: {value!r} is no readable file: {redacted(url)!r}")


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
    _check_query_names(parts.scheme, query, shown)
    master, db = "", 0
    if parts.scheme in SENTINEL_SCHEMES:
        master, db = _master_and_db(parts.path, shown)
    return RedisTarget(parts.scheme, nodes, unquote(user) or None, unquote(password) or None, master, db, query)


def _check_query_names(scheme: str, query: dict[str, str], shown: str) -> None:
    known = TLS_QUERY + WAIT_QUERY + (SENTINEL_QUERY if scheme in SENTINEL_SCHEMES else ())
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise RedisUrlError(f"unknown query parameter {unknown[0]!r} ({scheme}:// takes {', '.join(known)}): "
                            f"{shown!r}")


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


@dataclass(frozen=True, slots=True)
class ReplicationWait:
    """``wait_replicas`` / ``wait_timeout_ms`` of a URL: before a batch's offsets may be committed,
    wait (Redis ``WAIT``) until that many replicas have its writes, at most that long (0 = off)."""

    replicas: int = 0
    timeout_ms: int = WAIT_TIMEOUT_MS_DEFAULT


def replication_wait(url: str) -> ReplicationWait:
    query = {name: values[-1] for name, values in parse_qs(urlsplit(url).query).items()}
    values = {name: query.get(name, "") for name in WAIT_QUERY}
    if any(value and not value.isdigit() for value in values.values()):
        raise RedisUrlError(f"wait_replicas and wait_timeout_ms must be whole numbers: {redacted(url)!r}")
    if values["wait_replicas"] and url.partition("://")[0] in CLUSTER_SCHEMES:
        raise RedisUrlError(f"wait_replicas is for one server or Sentinel, not Redis Cluster: {redacted(url)!r}")
    return ReplicationWait(int(values["wait_replicas"] or 0),
                           int(values["wait_timeout_ms"] or WAIT_TIMEOUT_MS_DEFAULT))


def without_wait(url: str) -> str:
    """``url`` without patchgate's own query parameters (the Redis client refuses unknown ones)."""
    parts = urlsplit(url)
    kept = [(name, value) for name, values in parse_qs(parts.query).items() if name not in WAIT_QUERY
            for value in values]
    return urlunsplit(parts._replace(query=urlencode(kept)))
