"""An empty Faust agent (the baseline of bench_worker.py): consumes raw messages, does nothing.

Run by the benchmark as ``python benchmarks/faust_empty.py worker`` with BENCH_* environment
variables (BENCH_DATA_DIR: an existing directory for Faust's data); it records its progress in
Redis once per taken batch so the benchmark can time it.
"""

from __future__ import annotations

import os

import faust
import redis

BOOTSTRAP = os.environ["BENCH_BOOTSTRAP"]
TOPIC = os.environ["BENCH_TOPIC"]
PROGRESS = os.environ["BENCH_PROGRESS_KEY"]

app = faust.App(os.environ["BENCH_GROUP"], broker=f"kafka://{BOOTSTRAP}", value_serializer="raw",
                broker_session_timeout=6.0, broker_heartbeat_interval=1.2, consumer_auto_offset_reset="earliest",
                web_enabled=False, topic_disable_leader=True,
                datadir=os.path.join(os.environ["BENCH_DATA_DIR"], "{conf.name}-data"))
topic = app.topic(TOPIC, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw")
client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@app.agent(topic)
async def empty(stream: faust.StreamT[bytes]) -> None:
    async for events in stream.take_events(1000, within=0.02):  # type: ignore[attr-defined]
        marks: dict[str, int] = {}
        for event in events:
            field = str(event.message.partition)
            marks[field] = max(marks.get(field, -1), event.message.offset)
        client.hset(PROGRESS, mapping=marks)  # type: ignore[arg-type]


if __name__ == "__main__":
    app.main()
