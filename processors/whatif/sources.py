"""Where recorded metadata comes from: a JSONL file (gzip accepted) or a Kafka topic read by time.

Both yield the records of every message one by one, undecoded beyond JSON: a
``patchgate.metadata/1`` record or the records of a ``patchgate.metadata-batch/1`` envelope (with
its server key, which then names the tenant, as a Kafka key does). A line or message that cannot be
read becomes a :class:`Skip` naming where it was and why. Nothing is held beyond the current line or
message: the simulation restores event-time order itself, in a bounded window.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from processors.contracts import METADATA_SCHEMA
from processors.errors import PatchgateError
from processors.events.metadata import BadEnvelope, metadata_items
from processors.kafka import clients
from processors.kafka.config import KafkaConfig
from processors.kafka.types import KafkaException, TopicPartition

GZIP_MAGIC = b"\x1f\x8b"
MAX_LINE = 16 * 1024 * 1024  # an envelope of 1,000 records stays far below


class InputError(PatchgateError):
    """An input that cannot be read at all (missing file, unreachable topic): one line, exit 2."""


class Item(NamedTuple):
    """One record read (a tuple: made and freed once per record, in C)."""

    where: str
    key: str | None  # the server key it was published under (envelope, Kafka key); None for a bare record
    record: Any
    raw: bytes | None = None  # the JSON it was decoded from, when it is a message of its own
    topic: str | None = None  # the Kafka topic it was read from; None for a file's
    stamp: float | None = None  # the broker's timestamp of its Kafka message (epoch seconds); None for a file's


@dataclass(slots=True)
class Skip:
    where: str
    reason: str


@dataclass(slots=True)
class Progress:
    """How far a source is: ``done`` of ``total`` (bytes of a file, messages of a topic)."""

    done: int = 0
    total: int = 0


def open_lines(path: Path) -> IO[bytes]:
    """The file, decompressed when it starts with gzip's magic bytes."""
    try:
        raw = path.open("rb")
    except OSError as error:
        raise InputError(f"{path}: {error.strerror or error}") from None
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    if raw.peek(2)[:2] == GZIP_MAGIC:  # type: ignore[attr-defined]
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def numbered_lines(path: Path, progress: Progress | None = None) -> Iterator[tuple[str, bytes]]:
    """``("FILE:LINE", line)`` for every non-blank line; a line over :data:`MAX_LINE` is an error."""
    if progress is not None:
        progress.total = path.stat().st_size if path.is_file() else 0  # a pipe has no size
    name = str(path)
    with open_lines(path) as stream:
        compressed = getattr(stream, "fileobj", None)  # progress in bytes of the file, not of its content
        for number, line in enumerate(iter(lambda: stream.readline(MAX_LINE + 1), b""), start=1):
            if progress is not None:
                progress.done = compressed.tell() if compressed is not None else progress.done + len(line)
            if len(line) > MAX_LINE:
                raise InputError(f"{name}:{number}: a line longer than {MAX_LINE} bytes")
            if line.strip():
                yield f"{name}:{number}", line


def file_records(path: Path, progress: Progress | None = None) -> Iterator[Item | Skip]:
    """Every record of a JSONL file of metadata records and batch envelopes (gzip accepted)."""
    try:
        for where, line in numbered_lines(path, progress):
            yield from message_records(where, None, line)
    except (OSError, EOFError) as error:  # a truncated or corrupt gzip stream
        raise InputError(f"{path}: cannot read: {error}") from None


def message_records(where: str, key: bytes | None, value: bytes | None, topic: str | None = None,
                    stamp: float | None = None) -> list[Item | Skip]:
    """The records of one message (a line, or a Kafka message with its key, topic and timestamp)."""
    if value is None:
        return [Skip(where, "empty: the message has no value")]
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        return [Skip(where, f"invalid JSON: {error}")]
    if type(document) is dict and document.get("schema") == METADATA_SCHEMA:  # one bare record: most lines
        return [tuple.__new__(Item, (where, key.decode("utf-8", "replace") if key is not None else None, document,
                                     value, topic, stamp))]  # Item(...), made in C
    envelope_key = document.get("server_key") if isinstance(document, dict) else None
    if key is None and isinstance(envelope_key, str):
        key = envelope_key.encode()  # a file's envelope names its key itself
    try:
        items, batch = metadata_items(document, key)
    except BadEnvelope as error:
        return [Skip(where, str(error))]
    key_text = key.decode("utf-8", "replace") if key is not None else None
    if not batch:
        return [Item(where, key_text, items[0], value, topic, stamp)]
    return [Item(f"{where} record {index}", key_text, item, None, topic, stamp) for index, item in enumerate(items)]


def kafka_records(kafka: KafkaConfig, topics: Sequence[str], since: datetime | None, until: datetime | None,
                  progress: Progress | None = None, quiet: float = 0.5) -> Iterator[Item | Skip]:
    """Every record of ``topics`` (one, or a tenant's each in the per-tenant topic mode) whose
    message was written from ``since`` to ``until`` (broker timestamps), reading each partition from
    the offset of ``since`` to its end when reading began; each record names the topic it came from."""
    names = list(topics)
    consumer = clients.consumer(kafka, {"group.id": "patchgate-whatif", "enable.auto.commit": False,
                                        "enable.auto.offset.store": False, "log_level": 3})
    try:
        starts: dict[Partition, Any] = {}
        ends: dict[Partition, int] = {}
        for topic in names:
            topic_starts, topic_ends = _bounds(consumer, topic, since)
            starts.update(topic_starts)
            ends.update(topic_ends)
        if progress is not None:
            progress.total = sum(ends[p] - starts[p].offset for p in ends)
        if not ends:
            return
        consumer.assign([starts[p] for p in ends])
        yield from _read(consumer, ends, since, until, progress, quiet)
    except KafkaException as error:
        raise InputError(f"topic {', '.join(names)}: {error}") from None
    finally:
        consumer.close()


Partition = tuple[str, int]  # (topic, partition)


def _bounds(consumer: Any, topic: str, since: datetime | None) -> tuple[dict[Partition, Any], dict[Partition, int]]:
    """Per partition: the first offset at or after ``since`` and the end offset, where there is data."""
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise InputError(f"topic {topic}: not found on the brokers")
    at_ms = int(since.timestamp() * 1000) if since is not None else 0
    wanted = [TopicPartition(topic, p, at_ms) for p in sorted(metadata.partitions)]
    starts = {(topic, tp.partition): tp for tp in consumer.offsets_for_times(wanted, timeout=10)}
    ends = {}
    for (_, partition), tp in starts.items():
        high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
        if 0 <= tp.offset < high:
            ends[(topic, partition)] = high
    return starts, ends


def _read(consumer: Any, ends: dict[Partition, int], since: datetime | None, until: datetime | None,
          progress: Progress | None, quiet: float) -> Iterator[Item | Skip]:
    """Poll until every partition reached its end and nothing came for ``quiet`` seconds (some
    brokers report end offsets per producer batch, below the last record). The time range is checked
    on every message too: some brokers answer a time lookup with the partition's first offset."""
    since_ms = int(since.timestamp() * 1000) if since is not None else None
    until_ms = int(until.timestamp() * 1000) if until is not None else None
    remaining = dict(ends)
    done: set[Partition] = set()  # partitions past --until
    last_new = time.monotonic()
    while remaining or time.monotonic() - last_new < quiet:
        message = consumer.poll(0.1)
        if message is None or message.error() is not None:
            continue
        last_new = time.monotonic()
        topic, offset = str(message.topic()), int(message.offset() or 0)
        partition = (topic, int(message.partition() or 0))
        if offset + 1 >= remaining.get(partition, 0):
            remaining.pop(partition, None)
        if progress is not None:
            progress.done += 1
        if partition in done or partition not in ends:
            continue
        stamp = message.timestamp()[1]
        if until_ms is not None and stamp > until_ms:
            done.add(partition)
            remaining.pop(partition, None)
            continue
        if since_ms is not None and stamp < since_ms:
            continue
        yield from message_records(f"{topic}/{partition[1]}@{offset}", message.key(), message.value(), topic,
                                   stamp / 1000 if stamp > 0 else None)
