"""How the stores' refusals are read in the TLS tests: one ping through a fresh store, its error."""

from __future__ import annotations

import asyncio

import pytest

from processors.state.errors import StoreUnavailable
from processors.state.keys import KeySchema
from processors.state.store import StateStore


def ping_error(url: str, timeout_s: float = 2.0) -> str:
    """The error a store on ``url`` raises at its first ping, as its repr and its message (both are
    checked for secrets); fails the test when the ping succeeds."""
    async def ping() -> None:
        store = StateStore.from_url(url, KeySchema("pg"), socket_timeout=timeout_s, connect_timeout=timeout_s)
        try:
            await store.ping()
        finally:
            await store.close()

    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(ping())
    return f"{caught.value!r} {caught.value}"
