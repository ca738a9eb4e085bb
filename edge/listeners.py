"""Listening sockets shared by the milter and the policy service, and the limits every connection has.

Unix sockets are created ``0660`` (only our user and the socket's group may connect), chowned to a
configured group (Postfix's ``postfix``), in a directory that must exist and that no other user
can write to (owned by us or root, not group- or world-writable unless sticky): a local user
outside that group cannot connect, and none can swap the socket file. TCP ports bind loopback
unless told otherwise.

Every connection is bounded (:class:`ConnectionLimits`): at most ``max_connections`` at once
(excess connections are closed at once), closed after ``idle_timeout`` seconds without input, and
read no further while more than ``max_reply_buffer`` bytes of replies are unwritten (a peer that
writes without reading stalls itself, not the process). :class:`LimitedProtocol` implements this;
the counters are :class:`ListenerMetrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from processors.errors import PatchgateError

log = logging.getLogger(__name__)

DEFAULT_SOCKET_MODE = 0o660


class UnsafeSocketPath(PatchgateError, ValueError):
    """The Unix socket's directory or group is unusable or unsafe; the message says why."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-listener bounds; see the module docstring. ``idle_timeout`` 0 disables the idle check."""

    max_connections: int = 512
    idle_timeout: float = 900.0
    max_reply_buffer: int = 64 * 1024


@dataclass(slots=True)
class ListenerMetrics:
    connections_rejected_limit: int = 0
    idle_timeouts: int = 0
    reads_paused: int = 0


def resolve_group(group: str | int | None) -> int | None:
    """A group id from a name or number (None: keep the process's group)."""
    if group is None or group == "":
        return None
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise UnsafeSocketPath(f"socket group {group!r} does not exist") from None


def check_socket_directory(directory: Path) -> None:
    """Refuse a directory that is missing, not ours or root's, or writable by other users."""
    try:
        st = directory.stat()
    except FileNotFoundError:
        raise UnsafeSocketPath(f"socket directory {directory} does not exist; create it (owner root or "
                               "this user, mode 0750 or 0755)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeSocketPath(f"socket directory {directory} is not a directory")
    if st.st_uid not in (0, os.geteuid()):
        raise UnsafeSocketPath(f"socket directory {directory} is owned by uid {st.st_uid}, not by this user "
                               f"({os.geteuid()}) or root: its owner could replace the socket")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise UnsafeSocketPath(f"socket directory {directory} (mode {stat.S_IMODE(st.st_mode):04o}) is writable "
                               "by other users without the sticky bit: they could replace the socket")


class Listeners:
    """Owns the servers of one protocol; subclasses provide :meth:`protocol` (a new connection)."""

    def __init__(self, limits: ConnectionLimits | None = None) -> None:
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: set[Any] = set()
        self._unix_paths: list[Path] = []
        self.limits = limits or ConnectionLimits()
        self.listener_metrics = ListenerMetrics()

    def protocol(self) -> asyncio.Protocol:
        raise NotImplementedError

    async def listen_unix(self, path: str | Path, mode: int = DEFAULT_SOCKET_MODE,
                          group: str | int | None = None) -> None:
        """Listen on a Unix socket (a stale socket file at ``path`` is replaced); see the module docstring."""
        p = Path(path)
        check_socket_directory(p.parent)
        gid = resolve_group(group)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(p.lstat().st_mode):
                p.unlink()
        loop = asyncio.get_running_loop()
        old_umask = os.umask(0o777 & ~mode)  # the socket never exists with a wider mode
        try:
            srv = await loop.create_unix_server(self.protocol, str(p))
        finally:
            os.umask(old_umask)
        if gid is not None:
            os.chown(p, -1, gid)
        os.chmod(p, mode)
        self._servers.append(srv)
        self._unix_paths.append(p)

    async def listen_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on TCP (connections set TCP_NODELAY themselves); returns the bound port."""
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(self.protocol, host, port, reuse_address=True)
        self._servers.append(srv)
        return int(srv.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.close()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await srv.wait_closed()
        self._servers.clear()
        for p in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self._unix_paths.clear()


class LimitedProtocol(asyncio.Protocol):
    """A connection under its listener's :class:`ConnectionLimits`.

    Subclasses call :meth:`admit` first in ``connection_made`` (False: the connection was refused
    and closed), :meth:`touch` in ``data_received`` and :meth:`release` in ``connection_lost``.
    """

    transport: asyncio.Transport | None
    listener: Listeners
    _last_input: float
    _idle_handle: asyncio.TimerHandle | None
    _loop: asyncio.AbstractEventLoop

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        listener = self.listener
        limits = listener.limits
        stream = cast(asyncio.Transport, transport)  # asyncio's or uvloop's stream transport
        if len(listener._connections) >= limits.max_connections:
            listener.listener_metrics.connections_rejected_limit += 1
            stream.abort()
            return False
        self.transport = stream
        self.transport.set_write_buffer_limits(high=limits.max_reply_buffer)
        listener._connections.add(self)
        self._idle_handle = None
        self._loop = loop = asyncio.get_running_loop()
        if limits.idle_timeout > 0:
            self._last_input = loop.time()
            self._idle_handle = loop.call_later(limits.idle_timeout, self._idle_check)
        return True

    def touch(self) -> None:
        """Input arrived: the idle timer counts from now."""
        if self._idle_handle is not None:
            self._last_input = self._loop.time()

    def release(self) -> None:
        self.listener._connections.discard(self)
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self.transport = None

    def _idle_check(self) -> None:
        transport = self.transport
        if transport is None:
            return
        loop = self._loop
        timeout = self.listener.limits.idle_timeout
        idle = loop.time() - self._last_input
        if idle >= timeout:
            self.listener.listener_metrics.idle_timeouts += 1
            log.info("connection %s closed after %.0f s without input", self.peer_name(), idle)
            self._idle_handle = None
            transport.abort()
            return
        self._idle_handle = loop.call_later(timeout - idle, self._idle_check)

    def peer_name(self) -> str:
        return "unix"

    def pause_writing(self) -> None:
        """More than ``max_reply_buffer`` bytes of replies are unwritten: stop reading requests."""
        if self.transport is not None:
            self.listener.listener_metrics.reads_paused += 1
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
