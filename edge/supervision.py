"""Background threads that never die silently: an unexpected exception restarts the work with backoff.

The edge's publisher and verdict follower each run one loop on a thread. :class:`SupervisedThread`
runs that loop; if it raises, the exception is logged, :attr:`~SupervisedThread.restarts` counts it,
and the loop starts again after a backoff (doubling from ``initial_backoff`` up to ``max_backoff``,
reset once a run lasted longer than ``max_backoff``). :attr:`~SupervisedThread.alive` is true while
the loop runs (not during a backoff, not after it stopped): the edge exports both per thread
(``patchgate_edge_thread_alive`` and ``patchgate_edge_thread_restarts_total``, see
:mod:`edge.prometheus`). The loop returns normally when ``stop`` is set; then ``on_exit`` runs once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class SupervisedThread:
    """Runs ``body()`` on a daemon thread until it returns; restarts it when it raises."""

    def __init__(self, name: str, body: Callable[[], None], stop: threading.Event, *,
                 on_exit: Callable[[], None] | None = None, initial_backoff: float = 0.1,
                 max_backoff: float = 30.0) -> None:
        self.name = name
        self._body = body
        self._stop = stop
        self._on_exit = on_exit
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.restarts = 0
        self._running = False
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        """True while the body runs on a live thread."""
        return self._running and self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"thread {self.name} already started")
        self._thread = threading.Thread(target=self._main, name=f"patchgate-{self.name}", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        delay = self.initial_backoff
        try:
            while True:
                began = time.monotonic()
                if self._run_once():
                    return
                if time.monotonic() - began > self.max_backoff:
                    delay = self.initial_backoff
                log.warning("edge thread %s restarts in %.1f s (restart #%d)", self.name, delay, self.restarts)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.max_backoff)
        finally:
            self._running = False
            if self._on_exit is not None:
                try:
                    self._on_exit()
                except Exception:
                    log.exception("edge thread %s: cleanup at exit failed", self.name)

    def _run_once(self) -> bool:
        """Run the body once; True if it returned (stop), False if it raised (counted)."""
        self._running = True
        try:
            self._body()
            return True
        except Exception:
            self.restarts += 1
            log.exception("edge thread %s failed", self.name)
            return False
        finally:
            self._running = False
