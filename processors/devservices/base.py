"""Start, wait for and stop a local service process on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from processors.errors import PatchgateError


class ServiceUnavailable(PatchgateError, RuntimeError):
    """A service cannot be started here; the message says how to fix that."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tcp_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


class ManagedProcess:
    """One child process with its log file, readiness probe and PID-based stop.

    The log lives in a ``patchgate-<name>-*`` temp folder made at the first :meth:`start` (or the
    first look at :attr:`log_path`); it outlives :meth:`stop` so that a failure can still be read,
    and :meth:`close` stops the process and deletes the folder.
    """

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._log_dir: Path | None = None

    @property
    def log_path(self) -> Path:
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix=f"patchgate-{self.name}-"))
        return self._log_dir / f"{self.name}.log"

    def close(self) -> None:
        """Stop the process and delete its log folder."""
        self.stop()
        if self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    def start(self) -> None:
        log = self.log_path.open("wb")
        # start_new_session: a Ctrl-C in the terminal reaches us, not the service; we stop it ourselves.
        self.process = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, probe: Callable[[], bool], timeout: float) -> None:
        """Poll ``probe`` until it returns True; fail with the service log if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceUnavailable(
                    f"{self.name} exited with code {self.process.returncode} during start-up:\n{self.log_tail()}"
                )
            if probe():
                return
            time.sleep(0.05)
        self.stop()
        raise ServiceUnavailable(f"{self.name} did not become ready within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if self._log_dir is None:
            return "(no log)"
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, for failure tests."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if not self.process or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class ProcessService:
    """A local service run as one :class:`ManagedProcess`; subclasses define ``start``.

    ``stop`` (SIGTERM, SIGKILL after ``stop_timeout`` s), ``kill`` (SIGKILL, as a crash would) and
    ``restart`` (stop, then start on the same port) act on that process once it was started.
    """

    stop_timeout = 10.0
    _process: ManagedProcess | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self._process:
            self._process.stop(timeout=self.stop_timeout)

    def kill(self) -> None:
        if self._process:
            self._process.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the service and delete every temporary file it made (its log included)."""
        if self._process:
            self._process.stop(timeout=self.stop_timeout)
            self._process.close()
