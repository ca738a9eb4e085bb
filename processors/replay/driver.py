"""Feed replay steps to a running worker and wait, step by step, until the worker has done them.

Waiting uses the worker's progress marks in Redis (``<p>:progress``, see
:mod:`processors.state.keys`): a Kafka message counts as done once the worker recorded an offset at
or past it on its partition, a clock step once the leader's timer finished a tick at or past it.
No sleeps: the driver polls those marks until a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from processors.errors import PatchgateError
from processors.events.command import command_key, pause_command
from processors.events.metadata import MetadataRecord, encode_batch
from processors.events.wire import encode_event
from processors.kafka import clients
from processors.replay.sample import Step
from processors.settings import Settings
from processors.state.keys import PROGRESS_TIMER, KeySchema, progress_partition
from processors.state.store import ScenarioControl


class ReplayTimeout(PatchgateError, RuntimeError):
    """The worker did not finish a step in time."""


class ReplayDriver:
    def __init__(self, settings: Settings, *, envelopes: bool = True, step_timeout: float = 60.0,
                 on_step: Callable[[int, int, Step], None] | None = None) -> None:
        self.settings = settings
        self.envelopes = envelopes
        self.step_timeout = step_timeout
        self.on_step = on_step
        self.state = ScenarioControl(settings.redis_url, KeySchema(settings.key_prefix))
        self.producer = clients.producer(settings.kafka, {"enable.idempotence": True, "linger.ms": 2,
                                                          "partitioner": "murmur2_random"})

    def close(self) -> None:
        self.producer.flush(10)
        self.state.close()

    def run(self, steps: Sequence[Step], start: int = 0, stop: int | None = None) -> None:
        selected = list(steps)[start:stop]
        for index, step in enumerate(selected, start=start):
            if step.kind == "clock":
                self.set_clock(step.at.timestamp())
            elif step.kind == "pause":
                assert step.tenant is not None
                command = pause_command(tenant_id=step.tenant, action="pause_create", actor="replay",
                                        issued_at=step.at, days=step.days)
                self.send([(self.settings.topic_commands, command_key(command), encode_event(command))])
            else:
                self.send(self.mail_messages(step), at=step.at)
            if self.on_step:
                self.on_step(index, len(steps), step)

    def mail_messages(self, step: Step) -> list[tuple[str, bytes, bytes]]:
        topic = self.settings.topic_metadata
        if not self.envelopes:
            return [(topic, key.encode(), orjson.dumps(record)) for key, record in step.records]
        by_key: dict[str, list[MetadataRecord]] = {}
        for key, record in step.records:
            by_key.setdefault(key, []).append(record)
        return [(topic, key.encode(), encode_batch(key, records)) for key, records in by_key.items()]

    def produce(self, messages: Sequence[tuple[str, bytes, bytes]], at: datetime | None = None,
                on_delivery: Callable[[Any, Any], None] | None = None) -> None:
        """Produce without waiting; ``at`` becomes the messages' broker timestamp (CreateTime).

        The worker bounds event times by the broker's timestamp (at most a day ahead), so a replay
        stamps its messages with the simulated time they were sent at, as the edge would have.
        """
        timestamp = int(at.timestamp() * 1000) if at is not None else 0
        for topic, key, value in messages:
            self.producer.produce(topic, key=key, value=value, timestamp=timestamp, on_delivery=on_delivery)

    def send(self, messages: Sequence[tuple[str, bytes, bytes]], at: datetime | None = None) -> None:
        """Produce, then wait until the worker has processed every message."""
        placed: list[tuple[str, int, int]] = []
        errors: list[str] = []

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                placed.append((message.topic(), message.partition(), message.offset()))

        self.produce(messages, at, delivered)
        self.producer.flush(30)
        if errors or len(placed) != len(messages):
            raise ReplayTimeout(f"could not produce the step: {errors or 'unacknowledged records'}")
        need: dict[str, int] = {}
        for topic, partition, offset in placed:
            field = progress_partition(topic, partition)
            need[field] = max(need.get(field, -1), offset)
        self._wait(lambda marks: all(int(marks.get(f, -1)) >= o for f, o in need.items()), f"messages {need}")

    def set_clock(self, epoch: float) -> None:
        # the worker's clock is a datetime (microseconds): compare at that precision, or a time
        # like 1795865565.2107165 (rounded down to .210716) would never count as reached
        epoch = round(epoch, 6)
        self.state.set_clock(epoch)
        self._wait(lambda marks: float(marks.get(PROGRESS_TIMER, "-1")) >= epoch - 1e-6, f"the timer at {epoch}")

    def _wait(self, done: Callable[[dict[str, str]], bool], what: str) -> None:
        deadline = time.monotonic() + self.step_timeout
        delay = 0.005
        while True:
            marks = self.state.progress()
            if done(marks):
                return
            if time.monotonic() > deadline:
                raise ReplayTimeout(f"the worker did not finish {what} within {self.step_timeout:.0f}s")
            time.sleep(delay)  # polling interval of a condition, not a synchronisation sleep
            delay = min(delay * 2, 0.05)
