"""Start the real API app (with its production connection handler) on a free port against the session's Redis and
broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from confluent_kafka.admin import NewTopic

from processors.api.app import ApiContext, create_app, kafka_command_sink
from processors.api.auth import TokenStore
from processors.api.server import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT_S, GuardedAppRunner
from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.policyfile import PolicyFileSource
from processors.state.keys import KeySchema
from processors.state.store import StateStore

TENANT_A_TOKEN = "tok-contoso-" + "a" * 24
TENANT_B_TOKEN = "tok-fabrikam-" + "b" * 24
OPERATOR_TOKEN = "tok-operator-" + "c" * 24
TOKENS = {TENANT_A_TOKEN: "contoso", TENANT_B_TOKEN: "fabrikam", OPERATOR_TOKEN: "*"}


def create_topic(bootstrap: str, name: str, partitions: int = 2) -> None:
    admin = clients.admin(KafkaConfig(bootstrap))
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                            config={"cleanup.policy": "delete", "retention.ms": "3600000"})])
    futures[name].result(20)


def read_topic(bootstrap: str, topic: str, until: Callable[[list[tuple[bytes | None, bytes | None]]], bool],
               timeout: float = 30.0) -> list[tuple[bytes | None, bytes | None]]:
    """Read a topic from the beginning until ``until(records)`` holds or the timeout passes."""
    consumer = clients.consumer(KafkaConfig(bootstrap), {"group.id": f"t-{uuid.uuid4().hex[:8]}",
                                                         "enable.auto.commit": False, "enable.partition.eof": False})
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(metadata.topics[topic].partitions)])
    out: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(out) and time.monotonic() < deadline:
            for message in consumer.consume(100, timeout=0.5):
                error = message.error()
                if error is None:
                    out.append((message.key(), message.value()))
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(error))
    finally:
        consumer.close()
    return out


@dataclass
class RunningApi:
    base: str
    ctx: ApiContext
    app: web.Application
    redis: aioredis.Redis
    keys: KeySchema
    commands_topic: str


@asynccontextmanager
async def running_api(redis_url: str, kafka_bootstrap: str, prefix: str, commands_topic: str,
                      now: Callable[[], datetime] | None = None, redis_client: aioredis.Redis | None = None,
                      tokens: dict[str, str] | None = None,
                      read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
                      body_timeout_s: float | None = None,
                      max_connections: int = DEFAULT_MAX_CONNECTIONS,
                      policies: PolicyFileSource | None = None) -> AsyncIterator[RunningApi]:
    """``read_timeout_s`` bounds the headers and the body; ``body_timeout_s`` sets the body's apart;
    ``policies``: the policy file the API watches (default: the packaged one)."""
    client = redis_client or aioredis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
    keys = KeySchema(prefix)
    sink, _ = kafka_command_sink(KafkaConfig(kafka_bootstrap), commands_topic)
    extra: dict[str, Any] = {"now": now} if now else {}
    ctx = ApiContext(store=StateStore(client, keys), policies=policies or PolicyFileSource(),
                     tokens=TokenStore.from_mapping(tokens or TOKENS), commands=sink,
                     read_timeout_s=body_timeout_s or read_timeout_s,
                     **extra)
    app = create_app(ctx)
    runner = GuardedAppRunner(app, read_timeout_s=read_timeout_s, max_connections=max_connections, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield RunningApi(f"http://127.0.0.1:{port}", ctx, app, client, keys, commands_topic)
    finally:
        await runner.cleanup()
        await client.aclose()
        sink.close()
