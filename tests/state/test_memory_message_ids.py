"""The in-memory store without per-day message ids (``keep_message_ids=False``, for ``patchgate
whatif``) keeps everything else exactly as the default store does (unit)."""

from __future__ import annotations

import asyncio

from processors.state.memory import MemoryStateStore
from tests.state.test_store_bounds import busy_observation


def test_without_message_ids_the_state_is_the_same_and_no_day_set_is_kept() -> None:
    observation = busy_observation(ids=300, evidence=40, days=3)
    full, lean = MemoryStateStore(), MemoryStateStore(keep_message_ids=False)
    full_answer = asyncio.run(full.observe([observation], ["contoso"]))
    lean_answer = asyncio.run(lean.observe([observation], ["contoso"]))
    assert lean_answer == full_answer
    assert lean.hashes == full.hashes
    day_sets = {key for key in full.sets if key not in lean.sets}
    assert day_sets == {full.keys.server_day_hll(observation.server_key, day) for day in observation.event_ids_by_day}
    assert all(lean.sets[key] == full.sets[key] for key in lean.sets)
