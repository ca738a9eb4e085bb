"""Faust's aiokafka transport with a configurable fetch wait.

Faust creates its group consumer with ``fetch_max_wait_ms=1500`` and no setting to change it. A
broker that holds each fetch until that deadline when no new data is in (Tansu does) then adds up
to 1.5 s to every event's latency. :func:`transport_class` returns the stock transport whose
worker consumer waits at most ``fetch_max_wait_ms`` instead; everything else is Faust's.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


def transport_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    class PromptConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # read by AIOKafkaConsumer.start() when it builds its fetcher (aiokafka 0.14)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class PromptConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> PromptConsumerThread:
            return PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class PromptTransport(faust_aiokafka.Transport):
        Consumer = PromptConsumer

    return PromptTransport
