"""Command publication: the one way the CLI and the API put an operator command on the commands topic.

A command is produced with the tenant id as its key (the workers apply one tenant's commands in
order) and counts as sent only once the broker has acknowledged it. Nothing here touches Redis: the
workers apply commands, so every change is auditable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from processors import metrics
from processors.errors import PatchgateError
from processors.events.command import Command
from processors.events.command import pause_command as build_pause_command
from processors.events.wire import encode_event
from processors.kafka.config import KafkaConfig
from processors.kafka.delivery import DeliveryFailed, KafkaOutput


class CommandSendFailed(PatchgateError, RuntimeError):
    """The broker did not acknowledge a command in time."""


def pause_command(tenant: str, days: int | None, end: bool, actor: str, at: datetime | None = None) -> Command:
    """A validated pause command: create/extend by ``days``, or end the running pause."""
    return build_pause_command(tenant_id=tenant, action="pause_end" if end else "pause_create", actor=actor,
                               issued_at=at or datetime.now(UTC), days=days)


class CommandPublisher:
    """Produces command events (key = tenant id) and waits for the broker's acknowledgement."""

    def __init__(self, kafka: KafkaConfig, topic: str, timeout: float = 10.0,
                 logger: logging.Logger | None = None, error_cb: Callable[[Any], None] | None = None) -> None:
        own: dict[str, Any] = {"message.timeout.ms": int(timeout * 1000)}
        if logger is not None:
            own["logger"] = logger  # librdkafka's log with repeats summarised; polled by the caller
        if error_cb is not None:
            own["error_cb"] = error_cb
        self.output = KafkaOutput(kafka, **own)
        self.topic = topic
        self.timeout = timeout
        self._lock = asyncio.Lock()  # one command in flight: a failure belongs to its own request

    async def send(self, tenant: str, command: Command) -> None:
        async with self._lock:
            self.output.produce(self.topic, tenant.encode(), encode_event(command))
            try:
                await self.output.flush(self.timeout + 2)
            except DeliveryFailed as error:
                raise CommandSendFailed(str(error)) from None
        metrics.EVENTS_OUT.labels(self.topic).inc()

    def send_sync(self, tenant: str, command: Command) -> None:
        self.output.produce(self.topic, tenant.encode(), encode_event(command))
        try:
            self.output.flush_sync(self.timeout + 5)
        except DeliveryFailed as error:
            raise CommandSendFailed(str(error)) from None

    def close(self) -> None:
        self.output.producer.flush(5)
        self.output.producer.close()


def publish_pause(kafka: KafkaConfig, topic: str, tenant: str, days: int | None, end: bool, actor: str,
                  timeout: float = 10.0) -> Command:
    """Build, send and await one pause command (blocking); return it."""
    command = pause_command(tenant, days, end, actor)
    publisher = CommandPublisher(kafka, topic, timeout)
    try:
        publisher.send_sync(tenant, command)
    finally:
        publisher.close()
    return command
