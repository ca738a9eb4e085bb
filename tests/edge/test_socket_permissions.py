"""Least privilege at the edge's Unix sockets, checked with real unprivileged users.

A local user outside the socket's group must not reach the milter (it trusts the CONNECT address it
is told, so a session replayed by anyone could make a server look patched): ``nobody`` gets
``EACCES``, a process of the configured group (``postfix``, as Postfix's smtpd) negotiates.
Directories another user could write to or own are refused before a socket is created. Runs as
root (like the Postfix tests), which may switch to those users.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.listeners import UnsafeSocketPath, check_socket_directory
from edge.milter.server import AcceptAll, MilterServer

# System Python: the unprivileged child cannot read a virtualenv under /root.
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
GROUP = "postfix"

# Connects, negotiates OPTNEG like an MTA, prints "ok <reply command>" or "errno <n>".
CLIENT = r"""
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("errno", exc.errno)
    sys.exit(0)
s.sendall(struct.pack(">I", 13) + b"O" + struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
head = s.recv(5)
print("ok", head[4:5].decode())
"""

@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A root-owned 0755 directory (pytest's tmp dirs are 0700: nobody could not even look inside)."""
    path = Path(tempfile.mkdtemp(prefix="patchgate-sockets-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def connect_as(sock: Path, user: str, *, extra_groups: list[str] | None = None) -> str:
    result = subprocess.run([PYTHON, "-c", CLIENT, str(sock)], user=user, group="nogroup",
                            extra_groups=extra_groups or [], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def serving(sock: Path, **listen: object) -> tuple[MilterServer, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    server = MilterServer(AcceptAll())
    try:
        loop.run_until_complete(server.listen_unix(sock, **listen))  # type: ignore[arg-type]
    except BaseException:
        loop.close()
        raise
    return server, loop


def run_client_while_serving(loop: asyncio.AbstractEventLoop, sock: Path, user: str,
                             extra_groups: list[str] | None = None) -> str:
    """The server runs on ``loop`` while the unprivileged client process talks to it."""
    async def client() -> str:
        return await asyncio.to_thread(connect_as, sock, user, extra_groups=extra_groups)
    return loop.run_until_complete(client())


def test_nobody_is_refused_and_the_socket_group_may_connect(socket_dir: Path) -> None:
    sock = socket_dir / "milter.sock"
    server, loop = serving(sock, group=GROUP)
    try:
        st = sock.stat()
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == grp.getgrnam(GROUP).gr_gid
        # a local user outside the group: the connect itself fails, no session can be replayed
        assert run_client_while_serving(loop, sock, "nobody") == f"errno {errno.EACCES}"
        assert server.metrics.connections_opened == 0
        # a process in the socket's group (Postfix's smtpd runs as postfix) negotiates
        assert run_client_while_serving(loop, sock, "nobody", [GROUP]) == "ok O"
        assert server.metrics.connections_opened == 1
    finally:
        loop.run_until_complete(server.close())
        loop.close()
    assert not sock.exists()


def test_default_mode_without_group_keeps_the_process_group(socket_dir: Path) -> None:
    sock = socket_dir / "milter.sock"
    server, loop = serving(sock)
    try:
        st = sock.stat()
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == os.getegid()
        assert run_client_while_serving(loop, sock, "nobody", [GROUP]) == f"errno {errno.EACCES}"
    finally:
        loop.run_until_complete(server.close())
        loop.close()


@pytest.mark.parametrize(("mode", "owner", "why"), [
    (0o777, None, "writable by other users without the sticky bit"),
    (0o775, None, "writable by other users without the sticky bit"),
    (0o755, "nobody", "is owned by uid"),
])
def test_unsafe_directories_are_refused(socket_dir: Path, mode: int, owner: str | None, why: str) -> None:
    unsafe = socket_dir / "unsafe"
    unsafe.mkdir()
    unsafe.chmod(mode)
    if owner is not None:
        shutil.chown(unsafe, user=owner)
    with pytest.raises(UnsafeSocketPath, match=why):
        serving(unsafe / "milter.sock")
    assert not (unsafe / "milter.sock").exists()


def test_sticky_world_writable_directory_is_accepted_and_missing_one_refused(socket_dir: Path) -> None:
    sticky = socket_dir / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    check_socket_directory(sticky)
    with pytest.raises(UnsafeSocketPath, match="does not exist"):
        check_socket_directory(socket_dir / "missing")


def test_unknown_group_is_a_clear_error(socket_dir: Path) -> None:
    with pytest.raises(UnsafeSocketPath, match="socket group 'no-such-group' does not exist"):
        serving(socket_dir / "milter.sock", group="no-such-group")


def test_cli_refuses_an_unsafe_socket_directory_with_a_clear_message(socket_dir: Path) -> None:
    unsafe = socket_dir / "open"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    config = socket_dir / "edge.toml"
    config.write_text('[[connector]]\nid = "c"\ntenant_id = "t"\ntype = "OnPremises"\nclient_ips = ["192.0.2.0/24"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "edge", "milter", "--config", str(config), "--listen",
         f"unix:{unsafe / 'milter.sock'}", "--bootstrap", "127.0.0.1:1", "--catchup-timeout", "0", "--no-publish"],
        cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "writable by other users without the sticky bit" in result.stderr
