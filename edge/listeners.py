"""Listening sockets shared by the milter and the policy service: Unix sockets and TCP ports,
tracked connections, and a close that also removes the socket files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path
from typing import Any


class Listeners:
    """Owns the servers of one protocol; subclasses provide :meth:`protocol` (a new connection)."""

    def __init__(self) -> None:
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: set[Any] = set()
        self._unix_paths: list[Path] = []

    def protocol(self) -> asyncio.Protocol:
        raise NotImplementedError

    async def listen_unix(self, path: str | Path, mode: int = 0o666) -> None:
        """Listen on a Unix socket (a stale socket file at ``path`` is replaced)."""
        p = Path(path)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(p.lstat().st_mode):
                p.unlink()
        loop = asyncio.get_running_loop()
        srv = await loop.create_unix_server(self.protocol, str(p))
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
