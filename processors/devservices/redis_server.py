"""A throwaway ``redis-server`` on a free loopback port, without persistence."""

from __future__ import annotations

import shutil
import tempfile

from processors.devservices.base import ManagedProcess, ProcessService, ServiceUnavailable, free_port


def redis_ping(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


class RedisServer(ProcessService):
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: ManagedProcess | None = None

    def start(self, timeout: float = 15.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable(
                "redis-server is not installed: `apt-get install redis-server` (Debian) or put it on PATH; "
                "or point REDIS_URL at an existing server"
            )
        workdir = tempfile.mkdtemp(prefix="patchgate-redis-")
        self._process = ManagedProcess(
            "redis",
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, "--daemonize", "no"],
        )
        self._process.start()
        self._process.wait_ready(lambda: redis_ping(self.port), timeout)
