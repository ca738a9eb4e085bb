"""The event loop the edge servers run on: uvloop by default, asyncio's own on request.

The milter's own cost is protocol handling: each read costs the loop a wake-up, a callback and a
buffer, and each reply a write (Postfix batches the events it needs no reply for). With
uvloop (libuv) a milter that accepts everything spends about half the CPU per message that it
spends on asyncio's selector loop (measured with ``benchmarks/bench_postfix.py``: ~130 µs against
~230 µs per message). ``PATCHGATE_EDGE_LOOP=asyncio`` selects the standard loop (for debugging, or
where uvloop is not available).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from processors.errors import PatchgateError

T = TypeVar("T")
LOOP_ENV = "PATCHGATE_EDGE_LOOP"


class EventLoopError(PatchgateError, ValueError):
    """``PATCHGATE_EDGE_LOOP`` names a loop this machine cannot run."""


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    choice = (choice if choice is not None else os.environ.get(LOOP_ENV, "uvloop")).strip().lower() or "uvloop"
    if choice == "asyncio":
        return asyncio.new_event_loop
    if choice != "uvloop":
        raise EventLoopError(f"{LOOP_ENV}: expected 'uvloop' or 'asyncio', got {choice!r}")
    try:
        import uvloop
    except ImportError:
        raise EventLoopError(f"{LOOP_ENV}=uvloop but uvloop is not installed (pip install uvloop, "
                             f"or set {LOOP_ENV}=asyncio)") from None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """``asyncio.run`` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
