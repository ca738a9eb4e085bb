"""Running one async scenario against a fresh store of either kind (shared by the contract suite)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from processors.state.protocol import Store

T = TypeVar("T")
StoreFactory = Callable[[], Store]


def on_store(make: StoreFactory, scenario: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        store = make()
        await store.load_scripts()
        try:
            return await scenario(store)
        finally:
            await store.close()
    return asyncio.run(main())
