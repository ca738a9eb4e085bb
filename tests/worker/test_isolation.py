"""Per-record failure isolation, in-process against the real broker and Redis: a record whose processing
raises after its state was written costs that server's records only; the rest of the batch gets its
verdicts exactly once, also when the batch is delivered again; every dead letter is counted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from processors import metrics
from processors.enforcement.verdicts import Evaluation, ServerState, evaluate
from processors.kafka.delivery import KafkaOutput
from processors.settings import Settings
from processors.state.keys import KeySchema
from processors.state.store import StateStore
from processors.worker import processing
from processors.worker.clock import WallClock
from processors.worker.policies import PolicySource
from processors.worker.processing import RawMessage
from processors.worker.runtime import WorkerRuntime
from tests.worker.factories import metadata_event
from tests.worker.harness import isolated_settings, read_topic

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
POISONED = "contoso/ex3.contoso.com"


def dead_letter_count(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("patchgate_deadletter_total", {"reason": reason}) or 0.0


def runtime_for(settings: Settings) -> WorkerRuntime:
    return WorkerRuntime(settings, StateStore.from_url(settings.redis_url, KeySchema(settings.key_prefix)),
                         KafkaOutput(settings.kafka), PolicySource(None, None), WallClock())


def batch(settings: Settings) -> list[RawMessage]:
    messages = []
    for offset, index in enumerate(range(1, 6)):
        server = f"ex{index}.contoso.com"
        event = metadata_event(f"iso-{index}", T0, server=server)
        messages.append(RawMessage(settings.topic_metadata, 0, offset, f"contoso/{server}".encode(),
                                   orjson.dumps(event), T0.timestamp()))
    return messages


def failing_for(server_key: str) -> Callable[..., Evaluation]:
    def evaluate_or_overflow(state: ServerState, *args: Any) -> Evaluation:
        if state.server_key == server_key:
            raise OverflowError("date value out of range")
        return evaluate(state, *args)
    return evaluate_or_overflow


def test_an_evaluation_that_raises_dead_letters_that_server_alone(
        kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name)
    monkeypatch.setattr(processing, "evaluate", failing_for(POISONED))
    before = dead_letter_count("internal_error")

    async def scenario() -> None:
        runtime = runtime_for(settings)
        await runtime.start()
        messages = batch(settings)
        first = await runtime.process_batch(messages)
        again = await runtime.process_batch(messages)  # redelivered after a crash before the offset commit
        assert (first.dead_letters, first.verdicts, again.verdicts) == (1, 4, 0)
        await runtime.store.close()
    asyncio.run(scenario())

    letters = [value for _, value in read_topic(settings.kafka_bootstrap, settings.topic_deadletter)]
    assert [(letter["source"]["key"], letter["reason"]) for letter in letters] == [
        ("Y29udG9zby9leDMuY29udG9zby5jb20=", "internal error: OverflowError: date value out of range")] * 2
    verdicts = sorted(value["server_key"] for _, value in read_topic(settings.kafka_bootstrap,
                                                                     settings.topic_verdicts))
    assert verdicts == [f"contoso/ex{i}.contoso.com" for i in (1, 2, 4, 5)]  # exactly once each
    assert dead_letter_count("internal_error") - before == 2  # once per delivery of the poisoned record


def test_a_batch_dead_lettered_whole_is_counted(kafka_bootstrap: str, redis_url: str,
                                                unique_name: Callable[[str], str]) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, unique_name)
    before = dead_letter_count("internal_error")

    async def scenario() -> None:
        runtime = runtime_for(settings)
        await runtime.start()
        await runtime.dead_letter_batch(batch(settings), RuntimeError("a bug outside any record"))
        await runtime.store.close()
    asyncio.run(scenario())

    letters = read_topic(settings.kafka_bootstrap, settings.topic_deadletter)
    assert len(letters) == 5
    assert dead_letter_count("internal_error") - before == 5
