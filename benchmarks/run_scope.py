"""One benchmark run's scratch directory and its clean-up, also on Ctrl-C, SIGTERM or SIGHUP.

Everything a run creates goes under one temporary directory: ``TMPDIR`` points there for this
process and for every child it starts (broker, Redis, workers, milters), so their logs and data
directories land there too. Leaving the scope (normally, on an error, on a signal) stops every
process still running with that ``TMPDIR`` or inside that directory (found by PID in ``/proc``),
then removes the directory.
A signal interrupts the run once; the clean-up that follows is not interrupted by another.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from processors.devservices import ServiceUnavailable

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_TIMEOUT = 15.0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    for sig in SIGNALS:  # the clean-up this starts must run to its end
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def processes_under(root: Path) -> list[int]:
    """PIDs of the processes (other than this one) started with ``TMPDIR`` inside ``root``, or working
    in it (``redis-server`` overwrites its environment with its process title, but works in its ``--dir``)."""
    marker = f"TMPDIR={root}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            variables = (entry / "environ").read_bytes().split(b"\0")
            inside = any(v == marker or v.startswith(marker + b"/") for v in variables)
            if inside or Path(os.readlink(entry / "cwd")).is_relative_to(root):
                found.append(int(entry.name))
    return found


def stop_processes_under(root: Path, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM what is left of the run, SIGKILL what has not exited within ``timeout`` s."""
    pids = processes_under(root)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [pid for pid in pids if _running(pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie child is reaped by whoever started it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextlib.contextmanager
def run_scope(prefix: str = "patchgate-bench-") -> Iterator[Path]:
    """A temporary directory that ``TMPDIR`` points to while the run lasts; see the module docstring."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)  # Postfix's daemons (user postfix) must reach a queue kept in here (--queue-on-disk)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(root)
    saved_handlers = {sig: signal.signal(sig, _interrupt) for sig in SIGNALS}
    try:
        yield root
    finally:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        stop_processes_under(root)
        shutil.rmtree(root, ignore_errors=True)
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        for sig, handler in saved_handlers.items():
            signal.signal(sig, handler)


def run_benchmark(name: str, body: Callable[[], int]) -> int:
    """``body()`` inside a run scope; an interruption or a missing service is one line and an exit code."""
    try:
        with run_scope():
            return body()
    except KeyboardInterrupt:
        print(f"{name}: interrupted; what it started is stopped and its temporary files are removed",
              file=sys.stderr)
        return 130
    except ServiceUnavailable as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
