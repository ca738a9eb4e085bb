"""``patchgate.metadata/1`` records and ``patchgate.metadata-batch/1`` envelopes (key = server key).

Building: an edge (and the replay) builds a record with :func:`metadata_record` and sends records
of one server key in envelopes (:func:`envelope_parts`, :func:`encode_batch`).

Parsing is on the worker's hot path (tens of thousands of records a second), so it hands back the
decoded dicts themselves, typed as :class:`MetadataRecord`, and builds no object per record:
:func:`metadata_items` opens a message (a record or an envelope), :func:`parse_metadata_record`
checks one record against its contract and reads its event time (:func:`checked_record_parser`
only reads it, for a record the fast contract check already passed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NotRequired, TypedDict

import orjson

from processors.contracts import METADATA_BATCH_SCHEMA, METADATA_SCHEMA, contracts
from processors.errors import PatchgateError

MAX_BATCH_RECORDS = 1000  # the envelope schema's maxItems


class Connector(TypedDict):
    id: str
    type: str


class Tls(TypedDict, total=False):
    protocol: str | None
    cipher: str | None
    cert_subject: str | None


TLS_FIELDS = frozenset(Tls.__annotations__)


class Client(TypedDict):
    ip: str
    helo: str | None
    ptr: NotRequired[str | None]
    tls: NotRequired[Tls | None]


class Message(TypedDict):
    id: str | None
    size: int
    recipients: int


class HeadersTruncated(TypedDict):
    dropped_headers: int
    dropped_bytes: int
    reason: str


class MetadataRecord(TypedDict):
    schema: str
    event_id: str
    observed_at: str
    edge: str
    tenant_id: str
    connector: Connector
    client: Client
    message: Message
    headers: list[list[str]]
    headers_truncated: NotRequired[HeadersTruncated]


class BadEnvelope(PatchgateError, ValueError):
    """A metadata message that is neither a record nor a well-formed envelope for its key.

    ``path`` names the offending JSON value when the problem is the document's shape."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(reason)
        self.path = path


def metadata_record(*, event_id: str, observed_at: str, edge: str, tenant_id: str, connector_id: str,
                    connector_type: str, client_ip: str, helo: str | None, headers: list[list[str]],
                    message_id: str | None, size: int, recipients: int, ptr: str | None = None,
                    tls: Tls | None = None, headers_truncated: HeadersTruncated | None = None) -> MetadataRecord:
    """One record; ``tls`` and ``headers_truncated`` are left out when None.

    ``observed_at`` is RFC 3339 UTC text (:mod:`processors.events.times`: an edge keeps milliseconds)."""
    record: MetadataRecord = {
        "schema": METADATA_SCHEMA,
        "event_id": event_id,
        "observed_at": observed_at,
        "edge": edge,
        "tenant_id": tenant_id,
        "connector": {"id": connector_id, "type": connector_type},
        "client": {"ip": client_ip, "helo": helo, "ptr": ptr},
        "message": {"id": message_id, "size": size, "recipients": recipients},
        "headers": headers,
    }
    if tls is not None:
        record["client"]["tls"] = tls
    if headers_truncated is not None:
        record["headers_truncated"] = headers_truncated
    return record


def envelope_parts(server_key: str) -> tuple[bytes, bytes]:
    """The bytes before and after the encoded records, joined by commas, of ``server_key``'s envelope."""
    head = b'{"schema":"' + METADATA_BATCH_SCHEMA.encode() + b'","server_key":' + orjson.dumps(server_key) \
        + b',"records":['
    return head, b"]}"


def encode_batch(server_key: str, records: Sequence[MetadataRecord]) -> bytes:
    """One envelope of at most :data:`MAX_BATCH_RECORDS` records of ``server_key``."""
    head, tail = envelope_parts(server_key)
    return head + b",".join(orjson.dumps(record) for record in records) + tail


def metadata_items(document: Any, key: bytes | None) -> tuple[list[Any], bool]:
    """The (unchecked) records of one decoded message and whether it is an envelope.

    Raises :class:`BadEnvelope` for an unknown schema, a bad ``records`` list or an envelope whose
    ``server_key`` is not the message's Kafka key (compared case-insensitively)."""
    schema = document.get("schema") if isinstance(document, dict) else None
    if schema == METADATA_SCHEMA:
        return [document], False
    if schema != METADATA_BATCH_SCHEMA:
        raise BadEnvelope(f"unknown schema: expected {METADATA_SCHEMA!r} or "
                          f"{METADATA_BATCH_SCHEMA!r}, got {str(schema)[:80]!r}", "$.schema")
    items = document.get("records")
    if not isinstance(items, list) or not items or len(items) > MAX_BATCH_RECORDS:
        raise BadEnvelope(f"$.records: a batch needs 1..{MAX_BATCH_RECORDS} records", "$.records")
    envelope_key = document.get("server_key")
    key_text = (key or b"").decode("utf-8", "replace")
    if not isinstance(envelope_key, str) or envelope_key.lower() != key_text.lower():
        raise BadEnvelope(f"server key mismatch: the envelope's server_key {str(envelope_key)[:120]!r} "
                          f"differs from the Kafka key {key_text[:120]!r}")
    return items, True


RecordParser = Callable[[Any], tuple[MetadataRecord, datetime]]


def record_parser() -> RecordParser:
    """:func:`parse_metadata_record` with the compiled contract check bound once, for a hot loop."""
    check = contracts.metadata_record
    from_iso = datetime.fromisoformat

    def parse(item: Any) -> tuple[MetadataRecord, datetime]:
        check(item)
        return item, from_iso(item["observed_at"])
    return parse


def parse_metadata_record(item: Any) -> tuple[MetadataRecord, datetime]:
    """``item`` checked against the record contract, and its event time; raises ``ContractError``."""
    return record_parser()(item)
