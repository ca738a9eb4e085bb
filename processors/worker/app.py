"""The Faust application behind ``patchgate worker``.

Run it with ``patchgate worker`` (settings from ``PATCHGATE_*``, see :mod:`processors.settings`).
Agents:

- ``metadata``: takes up to ``PATCHGATE_BATCH_MAX_MESSAGES`` Kafka messages (each a record or a batch
  envelope of many records) within ``PATCHGATE_BATCH_MAX_WAIT_MS`` and hands them to the
  :class:`~processors.worker.runtime.WorkerRuntime` as one batch: Faust's per-message cost is paid
  once per Kafka message, not once per record. The window is short (5 ms) because Faust's take
  waits all of it after every batch unless the batch fills, and under load whatever arrived while
  the previous batch was processed is already buffered: a long window only adds latency.
- ``commands``: operator commands (pauses), one at a time, in order per tenant.
- a timer on every worker; the one holding a short Redis lease does the time-driven work (stage
  transitions without new mail, notices, pause expiry, reloads, outbox recovery). A lease instead of
  Faust's leader election: it does not depend on one topic partition's assignment, and a dead
  holder is replaced once its lease expires.
- a timer on every worker that sets ``patchgate_consumer_lag`` from the broker
  (:mod:`processors.kafka.lag`, every ``PATCHGATE_LAG_INTERVAL_S``; in the per-tenant mode every
  tenant metadata topic too, consumed yet or not) and the outbox backlog gauges from Redis
  (:mod:`processors.worker.outbox_backlog`).

Faust's own per-event machinery is the bottleneck for unbatched input (~90 µs per Kafka message on
a 2-core machine), which is why producers should send batch envelopes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import faust

from processors.kafka.delivery import KafkaOutput
from processors.kafka.faust_auth import faust_broker_options
from processors.kafka.lag import ConsumerLag
from processors.kafka.logs import kafka_logger
from processors.settings import Settings
from processors.state.keys import KeySchema
from processors.state.store import StateStore
from processors.worker.clock import Clock, StoreClock, WallClock
from processors.worker.outbox_backlog import measure_outbox_backlog
from processors.worker.policies import PolicySource, check_policy_file
from processors.worker.processing import RawMessage
from processors.worker.runtime import WorkerRuntime
from processors.worker.transport import transport_class

log = logging.getLogger(__name__)
TENANT_TOPICS_INTERVAL_S = 30.0  # how often a per-tenant worker looks for new tenant topics


def _raw(event: Any) -> RawMessage:
    message = event.message
    timestamp = message.timestamp if isinstance(message.timestamp, (int, float)) and message.timestamp > 0 else None
    return RawMessage(message.topic, message.partition, message.offset, message.key, message.value, timestamp)


class PatchgateApp(faust.App):
    """A Faust app whose group consumer uses :func:`transport_class` (a configurable fetch wait)."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self._fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return transport_class(self._fetch_max_wait_ms)(self.conf.broker_consumer, self)


def metadata_topic_names(settings: Settings) -> list[str]:
    """The metadata topics to consume: the shared one, and in the per-tenant mode every tenant's
    whose verdicts topic exists (created here when missing; see ``serving_tenant_topics``).

    In the per-tenant mode the shared topic stays subscribed (a worker needs at least one topic,
    and a tenant may not exist yet): whatever a producer writes there names no tenant by its topic
    and is dead-lettered.
    """
    if not settings.per_tenant_topics:
        return [settings.topic_metadata]
    from processors.kafka.topics import serving_tenant_topics

    return [settings.topic_metadata, *serving_tenant_topics(settings)]


def subscribe_new_tenant_topics(app: faust.App, topic: Any, settings: Settings) -> list[str]:
    """Add the tenant topics created since the worker started to its subscription; return them.

    Faust subscribes by topic names (its pattern subscription is not wired to the Kafka client), so
    the worker matches the pattern itself: it extends the topic's name list in place (every clone
    of the topic, the agent's stream included, shares that list) and asks Faust's conductor to
    resubscribe, which it does after its resubscription delay (45 s).
    """
    new = [name for name in metadata_topic_names(settings) if name not in topic.topics]
    if new:
        log.info("subscribing to %d new tenant metadata topic(s): %s", len(new), ", ".join(new))
        topic.topics.extend(new)
        conductor: Any = app.topics
        app.loop.call_soon_threadsafe(conductor._flag_changes)
    return new


def create_app(settings: Settings, clock_kind: str | None = None) -> tuple[faust.App, dict[str, Any]]:
    """Build the Faust app; the returned dict holds the runtime once the worker has started.

    Faust's clients get the bootstrap servers and the SASL/TLS properties of the same Kafka
    configuration as the librdkafka ones (:mod:`processors.kafka.faust_auth`).
    """
    session_timeout = settings.session_timeout_ms / 1000
    broker = faust_broker_options(settings.kafka)
    settings.faust_data_dir.mkdir(parents=True, exist_ok=True)
    app = PatchgateApp(
        settings.consumer_group,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker.credentials,
        **({"broker_client_id": broker.client_id} if broker.client_id else {}),
        value_serializer="raw",
        key_serializer="raw",
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(0.5, session_timeout / 5),
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.metadata_partitions,
        topic_replication_factor=settings.topic_replication_factor,  # Faust's own (leader) topic
        web_enabled=settings.web_port != 0,
        web_port=settings.web_port or 6066,
        web_bind="127.0.0.1",
        store="memory://",
        datadir=str(settings.faust_data_dir / "{conf.name}-data"),  # Faust fills in the group name
    )
    metadata_topic = app.topic(*metadata_topic_names(settings), key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw", partitions=settings.metadata_partitions)
    metadata_topic.topics = list(metadata_topic.topics)  # one growable list, shared by the agent's clones
    commands_topic = app.topic(settings.topic_commands, key_type=bytes, value_type=bytes, key_serializer="raw",
                               value_serializer="raw", partitions=settings.partitions_of("commands_partitions"))
    holder: dict[str, Any] = {}

    def runtime() -> WorkerRuntime:
        return holder["runtime"]  # type: ignore[no-any-return]

    @app.task
    async def start_runtime() -> None:
        store = StateStore.from_url(settings.redis_url, KeySchema(settings.key_prefix))
        kind = (clock_kind or os.environ.get("PATCHGATE_CLOCK", "wall")).lower()
        clock: Clock = StoreClock(store) if kind == "redis" else WallClock()
        holder["store"] = store  # the Redis store itself: the outbox gauges read it beyond the Store protocol
        holder["runtime"] = WorkerRuntime(
            settings, store, KafkaOutput(settings.kafka, logger=kafka_logger("patchgate.worker.kafka")),
            PolicySource(settings.policy_file, settings.catalog_file, settings.policy_check_interval_s,
                         products_dir=settings.products_dir), clock,
        )
        holder["started"] = True
        await runtime().start()
        log.info("patchgate worker ready (group %s, clock %s)", settings.consumer_group, kind)

    @app.agent(metadata_topic, name="metadata")
    async def metadata(stream: faust.StreamT[Any]) -> None:
        batches = stream.take_events(  # type: ignore[attr-defined]  # not on StreamT, on Stream
            settings.batch_max_messages, within=settings.batch_max_wait_ms / 1000)
        async for events in batches:
            while "runtime" not in holder:
                await app.sleep(0.05)
            batch = [_raw(event) for event in events]
            try:
                stats = await runtime().process_batch(batch)
                log.debug("batch: %s", stats)
            except Exception as error:  # a bug, not an outage (outages are retried inside)
                log.exception("batch failed; dead-lettering its %d messages", len(batch))
                await runtime().dead_letter_batch(batch, error)

    @app.agent(commands_topic, name="commands")
    async def commands(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            while "runtime" not in holder:
                await app.sleep(0.05)
            outcome = await runtime().process_command(_raw(event))
            if outcome is not None:
                log.info("command applied for tenant: %s", outcome.text)

    if settings.lag_interval_s:
        lag = ConsumerLag(settings.kafka, settings.consumer_group, settings.topic_metadata,
                          tenant_pattern=settings.metadata_topic_pattern if settings.per_tenant_topics else None)

        @app.timer(settings.lag_interval_s)
        async def measure_lag() -> None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, lag.export)
            except Exception as error:  # the gauge keeps its last value; the next run retries
                log.warning("could not measure the consumer lag: %s", error)
            if "runtime" in holder:
                await measure_outbox_backlog(holder["store"], time.time())

    if settings.per_tenant_topics:

        @app.timer(TENANT_TOPICS_INTERVAL_S)
        async def follow_tenant_topics() -> None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, subscribe_new_tenant_topics,
                                                                 app, metadata_topic, settings)
            except Exception as error:  # the next run retries; the subscribed topics keep flowing
                log.warning("could not list the tenants' metadata topics: %s", error)

    @app.timer(settings.timer_interval_s)
    async def timer() -> None:
        if "runtime" in holder:
            try:
                await runtime().tick()
            except Exception:  # never let the timer take the worker down; the next tick retries
                log.exception("timer tick failed")

    return app, holder


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    from processors.kafka.clients import check_connection
    from processors.kafka.topics import ensure_topics, require_no_contradictions

    faust_broker_options(settings.kafka)  # refuses what Faust cannot apply before connecting at all
    check_policy_file(settings.policy_file)
    from processors.logsetup import logging_config
    from processors.worker.readiness import install_worker_probes

    check_connection(settings.kafka)
    ensure_topics(settings)
    require_no_contradictions(settings)
    app, holder = create_app(settings)
    if settings.metrics_port:  # /metrics, /livez and /readyz on the metrics address
        install_worker_probes(app, holder, settings)
    # faust's `-l warn` turns the root logger to DEBUG (measured: debug logging costs throughput):
    # keep it at info or above.
    worker = faust.Worker(app, loglevel=loglevel, quiet=True,
                          logging_config=logging_config("worker", loglevel.upper()))
    worker.execute_from_commandline()
    return 0
