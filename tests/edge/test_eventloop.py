"""The edge's event-loop choice: uvloop by default, asyncio on request, a clear error otherwise."""

from __future__ import annotations

import asyncio

import pytest

from edge.eventloop import EventLoopError, loop_factory, run


async def loop_kind() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_default_is_uvloop_and_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATCHGATE_EDGE_LOOP", raising=False)
    assert run(loop_kind()).startswith("uvloop")
    monkeypatch.setenv("PATCHGATE_EDGE_LOOP", "asyncio")
    assert run(loop_kind()).startswith("asyncio")


def test_unknown_loop_is_refused_with_the_variable_name() -> None:
    with pytest.raises(EventLoopError, match="PATCHGATE_EDGE_LOOP: expected 'uvloop' or 'asyncio', got 'tokio'"):
        loop_factory("tokio")
