"""A throwaway Sentinel setup on loopback: one master, one replica, one sentinel (quorum 1).

The master and the replica are :class:`~processors.devservices.redis_server.RedisServer` processes;
the sentinel is ``redis-sentinel`` (Debian package ``redis-sentinel``) or, without it,
``redis-server --sentinel``, with a config file in its own temp folder (Sentinel rewrites it). It
declares the master down after :data:`DOWN_AFTER_MS` and promotes the replica. :attr:`url` is the
``redis+sentinel://`` URL of :mod:`processors.state.connection`; :meth:`close` stops everything and
deletes the folders.

With ``tls=True`` all three listen on TLS only (plain-text ports off), with server certificates
from a throwaway CA (:func:`~processors.devservices.redis_tls.make_certificates`); the replica
replicates and the sentinel monitors over TLS. The ``default`` user is off everywhere: clients log
in to the servers as :data:`~processors.devservices.redis_tls.USER` and to the sentinel as
:data:`SENTINEL_USER`, and the sentinel logs in to the servers as :data:`MONITOR_USER` (only the
commands Sentinel needs). :attr:`url` is then the ``rediss+sentinel://`` URL with the CA and both
logins.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from processors.devservices.base import ManagedProcess, ServiceUnavailable, free_port
from processors.devservices.redis_server import RedisServer, server_binary
from processors.devservices.redis_tls import USER, make_certificates, tls_server_args

MASTER_NAME = "patchgate"
# Long enough that a busy machine (a server slow to answer PING while it loads a full sync) does
# not look down: a false "down" right after a failover would promote the still empty new replica.
DOWN_AFTER_MS = 3000
FAILOVER_TIMEOUT_MS = 5000
SENTINEL_USER = "patchgate-sentinel"  # the sentinel's own ACL user, for clients asking for the master
MONITOR_USER = "sentinel-monitor"  # the servers' ACL user the sentinel logs in as
MONITOR_RIGHTS = ("allchannels", "+multi", "+slaveof", "+ping", "+exec", "+subscribe", "+config|rewrite",
                  "+role", "+publish", "+info", "+client|setname", "+client|kill", "+script|kill")


def sentinel_master(port: int, **login: Any) -> tuple[str, int] | None:
    """The master address the sentinel on ``port`` currently names, or None if it does not answer
    (``login``: TLS and ACL options of the sentinel client)."""
    import redis

    try:
        answer = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5, **login).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
    except redis.RedisError:
        return None
    if not answer:
        return None
    host, master_port = (part.decode() if isinstance(part, bytes) else str(part) for part in answer)
    return host, int(master_port)


def replica_linked(port: int, **login: Any) -> bool:
    """Whether the server on ``port`` is a replica whose link to its master is up."""
    import redis

    try:
        info = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5, **login).info("replication")
    except redis.RedisError:
        return False
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def server_answers(port: int, **login: Any) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5, **login).ping())
    except redis.RedisError:
        return False


class GroupTls:
    """Certificates (made by :meth:`make`) and passwords of a TLS-only group, in its folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca_file = folder / "ca.pem"
        self.password = secrets.token_urlsafe(18)  # USER on the servers
        self.sentinel_password = secrets.token_urlsafe(18)  # SENTINEL_USER on the sentinel
        self.monitor_password = secrets.token_urlsafe(18)  # MONITOR_USER on the servers

    def make(self) -> None:
        make_certificates(self.folder)

    def url(self, sentinel_port: int) -> str:
        return (f"rediss+sentinel://{USER}:{self.password}@127.0.0.1:{sentinel_port}/{MASTER_NAME}/0"
                f"?ssl_ca_certs={self.ca_file}&sentinel_username={SENTINEL_USER}"
                f"&sentinel_password={self.sentinel_password}")

    def server_args(self, port: int) -> list[str]:
        return [*tls_server_args(self.folder, port), "--user", "default", "off",
                "--user", USER, "on", f">{self.password}", "~*", "&*", "+@all",
                "--user", MONITOR_USER, "on", f">{self.monitor_password}", *MONITOR_RIGHTS,
                "--masteruser", USER, "--masterauth", self.password]

    def server_login(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca_file), "username": USER, "password": self.password}

    def sentinel_login(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca_file), "username": SENTINEL_USER,
                "password": self.sentinel_password}

    def sentinel_listen(self, port: int) -> str:
        """The sentinel config's listening, TLS and ACL lines."""
        return (f"port 0\ntls-port {port}\ntls-cert-file {self.folder / 'server.pem'}\n"
                f"tls-key-file {self.folder / 'server.key'}\ntls-ca-cert-file {self.ca_file}\n"
                f"tls-auth-clients no\ntls-replication yes\nuser default off\n"
                f"user {SENTINEL_USER} on >{self.sentinel_password} allchannels +@all\n")

    def sentinel_monitor_login(self) -> str:
        return (f"sentinel auth-user {MASTER_NAME} {MONITOR_USER}\n"
                f"sentinel auth-pass {MASTER_NAME} {self.monitor_password}\n")


class RedisSentinelGroup:
    """A master, its replica and a sentinel watching them; :meth:`fail_over` kills the master."""

    def __init__(self, *, tls: bool = False) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="patchgate-sentinel-"))
        self.tls = GroupTls(self.folder) if tls else None
        self.master = self._server(free_port(), "redis-master")
        self.replica = self._server(free_port(), "redis-replica", replica_of=self.master.port)
        self.sentinel_port = free_port()
        self.url = (self.tls.url(self.sentinel_port) if self.tls
                    else f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{MASTER_NAME}/0")
        self._sentinel: ManagedProcess | None = None

    @property
    def server_login(self) -> dict[str, Any]:
        """Keyword arguments of a redis-py client of the master or the replica."""
        return self.tls.server_login() if self.tls else {}

    @property
    def sentinel_login(self) -> dict[str, Any]:
        return self.tls.sentinel_login() if self.tls else {}

    def _server(self, port: int, name: str, replica_of: int | None = None) -> RedisServer:
        args = ["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []
        if self.tls is None:
            return RedisServer(port, name=name, extra_args=args)
        login = self.tls.server_login()
        return RedisServer(port, name=name, extra_args=[*self.tls.server_args(port), *args],
                           probe=lambda: server_answers(port, **login))

    def start(self, timeout: float = 30.0) -> None:
        if self.tls:
            self.tls.make()
        self.master.start()
        self.replica.start()
        assert self.replica._process is not None
        self.replica._process.wait_ready(lambda: replica_linked(self.replica.port, **self.server_login), timeout)
        config = self.folder / "sentinel.conf"
        config.write_text(self._sentinel_config())
        sentinel = shutil.which("redis-sentinel")
        argv = [sentinel, str(config)] if sentinel else [str(server_binary()), str(config), "--sentinel"]
        self._sentinel = ManagedProcess("redis-sentinel", argv)
        self._sentinel.start()
        self._sentinel.wait_ready(lambda: self.current_master() == ("127.0.0.1", self.master.port), timeout)

    def _sentinel_config(self) -> str:
        listen = self.tls.sentinel_listen(self.sentinel_port) if self.tls else f"port {self.sentinel_port}\n"
        return (f"{listen}bind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 1\n"
                f"{self.tls.sentinel_monitor_login() if self.tls else ''}"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n")

    def current_master(self) -> tuple[str, int] | None:
        return sentinel_master(self.sentinel_port, **self.sentinel_login)

    def fail_over(self, timeout: float = 30.0) -> None:
        """SIGKILL the master, wait until the sentinel names the replica, then start a new replica of
        it on the old master's port (as a restarted pod configured from Sentinel would) and wait
        until it replicates; the two servers have swapped roles afterwards."""
        old, new = self.master, self.replica
        old.kill()
        self._wait(lambda: self.current_master() == ("127.0.0.1", new.port), timeout, "the replica promoted")
        old.close()
        rejoined = self._server(old.port, "redis-replica", replica_of=new.port)
        self.master, self.replica = new, rejoined
        rejoined.start()
        self._wait(lambda: replica_linked(rejoined.port, **self.server_login), timeout,
                   "the old master's port replicating the new one")

    def _wait(self, done: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():  # type: ignore[operator]
            if time.monotonic() > deadline:
                log = self._sentinel.log_tail() if self._sentinel else "(no sentinel)"
                raise ServiceUnavailable(f"Sentinel failover: no {what} within {timeout:.0f}s:\n{log}")
            time.sleep(0.05)  # polling interval of a condition

    def close(self) -> None:
        if self._sentinel is not None:
            self._sentinel.close()
        self.replica.close()
        self.master.close()
        shutil.rmtree(self.folder, ignore_errors=True)
