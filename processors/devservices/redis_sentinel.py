"""A throwaway Sentinel setup on loopback: one master, one replica, one sentinel (quorum 1).

The master and the replica are :class:`~processors.devservices.redis_server.RedisServer` processes;
the sentinel is ``redis-sentinel`` (Debian package ``redis-sentinel``) or, without it,
``redis-server --sentinel``, with a config file in its own temp folder (Sentinel rewrites it). It
declares the master down after :data:`DOWN_AFTER_MS` and promotes the replica. :attr:`url` is the
``redis+sentinel://`` URL of :mod:`processors.state.connection`; :meth:`close` stops everything and
deletes the folders.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from processors.devservices.base import ManagedProcess, ServiceUnavailable, free_port
from processors.devservices.redis_server import RedisServer, server_binary

MASTER_NAME = "patchgate"
# Long enough that a busy machine (a server slow to answer PING while it loads a full sync) does
# not look down: a false "down" right after a failover would promote the still empty new replica.
DOWN_AFTER_MS = 3000
FAILOVER_TIMEOUT_MS = 5000


def sentinel_master(port: int) -> tuple[str, int] | None:
    """The master address the sentinel on ``port`` currently names, or None if it does not answer."""
    import redis

    try:
        answer = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
    except redis.RedisError:
        return None
    if not answer:
        return None
    host, master_port = (part.decode() if isinstance(part, bytes) else str(part) for part in answer)
    return host, int(master_port)


def replica_linked(port: int) -> bool:
    """Whether the server on ``port`` is a replica whose link to its master is up."""
    import redis

    try:
        info = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5).info("replication")
    except redis.RedisError:
        return False
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


class RedisSentinelGroup:
    """A master, its replica and a sentinel watching them; :meth:`fail_over` kills the master."""

    def __init__(self) -> None:
        self.master = RedisServer(name="redis-master")
        self.replica = RedisServer(name="redis-replica", extra_args=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.sentinel_port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="patchgate-sentinel-"))
        self.url = f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{MASTER_NAME}/0"
        self._sentinel: ManagedProcess | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.master.start()
        self.replica.start()
        assert self.replica._process is not None
        self.replica._process.wait_ready(lambda: replica_linked(self.replica.port), timeout)
        config = self.folder / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.folder}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n")
        sentinel = shutil.which("redis-sentinel")
        argv = [sentinel, str(config)] if sentinel else [str(server_binary()), str(config), "--sentinel"]
        self._sentinel = ManagedProcess("redis-sentinel", argv)
        self._sentinel.start()
        self._sentinel.wait_ready(lambda: sentinel_master(self.sentinel_port) == ("127.0.0.1", self.master.port),
                                  timeout)

    def current_master(self) -> tuple[str, int] | None:
        return sentinel_master(self.sentinel_port)

    def fail_over(self, timeout: float = 30.0) -> None:
        """SIGKILL the master, wait until the sentinel names the replica, then start a new replica of
        it on the old master's port (as a restarted pod configured from Sentinel would) and wait
        until it replicates; the two servers have swapped roles afterwards."""
        old, new = self.master, self.replica
        old.kill()
        self._wait(lambda: self.current_master() == ("127.0.0.1", new.port), timeout, "the replica promoted")
        old.close()
        rejoined = RedisServer(old.port, name="redis-replica", extra_args=["--replicaof", "127.0.0.1", str(new.port)])
        self.master, self.replica = new, rejoined
        rejoined.start()
        self._wait(lambda: replica_linked(rejoined.port), timeout, "the old master's port replicating the new one")

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
