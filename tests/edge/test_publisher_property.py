"""Property: whatever bytes an MTA hands over, the edge keeps publishing.

Arbitrary bytes in the HELO name, the Received ``by`` host, header names and values and the queue
id go through the milter's payload parsing (:mod:`edge.milter.codec`), the milter application
(classification, server key, record building) and the real :meth:`MetadataPublisher.publish` and
envelope building. Every record is either published as JSON that the metadata contract accepts,
or dropped and counted with a reason; nothing raises, and a well-formed message after each
arbitrary one is still published.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import Connector, config_from_connectors
from edge.milter.app import PatchgateMilter
from edge.milter.codec import SMFIC_HEADER, SMFIC_HELO, encode_packet, iter_packets, parse_header, parse_strings
from edge.milter.server import Session
from edge.publisher import MetadataPublisher
from edge.verdicts import VerdictIndex
from processors.contracts import contracts
from tests.edge.helpers import T0, exchange_headers

text_bytes = st.binary(max_size=80).map(lambda b: b.replace(b"\0", b""))


class RecordingProducer:
    """Stands in for librdkafka at the produce call: keeps what would go to the broker."""

    def __init__(self) -> None:
        self.produced: list[tuple[bytes, bytes]] = []

    def produce(self, topic: str, *, key: bytes, value: bytes, on_delivery: Any) -> None:
        self.produced.append((key, value))
        on_delivery(None, None)

    def poll(self, timeout: float) -> int:
        return 0


def through_the_codec(command: bytes, *fields: bytes) -> list[str]:
    """The strings the milter server gets for a packet carrying ``fields`` (NUL-terminated)."""
    [(cmd, payload)] = list(iter_packets(encode_packet(command, b"".join(f + b"\0" for f in fields))))
    return parse_strings(payload, "test") if cmd != SMFIC_HEADER else list(parse_header(payload))


def session(helo: bytes, by_host: bytes, headers: list[tuple[bytes, bytes]], queue_id: bytes) -> Session:
    s = Session("test")
    s.family, s.address = "4", "192.0.2.10"
    s.helo = through_the_codec(SMFIC_HELO, helo)[0]
    received = b"from EX02.contoso.com (10.0.0.6) by " + by_host + b" (10.0.0.5) with Microsoft SMTP Server id " \
        + b"15.1.2507.6; Sat, 28 Nov 2026 10:00:00 +0000"
    for name, value in [(b"Received", received), *headers]:
        if name:
            parsed_name, parsed_value = through_the_codec(SMFIC_HEADER, name, value)
            s.headers.append((parsed_name, parsed_value))
    s.macros["i"] = through_the_codec(SMFIC_HELO, queue_id)[0]
    return s


def milter() -> tuple[PatchgateMilter, MetadataPublisher]:
    index = VerdictIndex()
    index.caught_up = True
    publisher = MetadataPublisher("127.0.0.1:1")  # never started: the test drives the flush itself
    config = config_from_connectors([Connector("c", "contoso", "OnPremises", (ipaddress.ip_network("192.0.2.0/24"),))])
    return PatchgateMilter(config, index, publisher, clock=lambda: T0), publisher


def dropped(publisher: MetadataPublisher) -> int:
    m = publisher.metrics
    return m.records_dropped_bad_key + m.records_dropped_not_serialisable + m.records_dropped_too_large


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(helo=text_bytes, by_host=text_bytes, queue_id=text_bytes,
       headers=st.lists(st.tuples(text_bytes, st.binary(max_size=200).map(lambda b: b.replace(b"\0", b""))),
                        max_size=8))
def test_arbitrary_bytes_never_stop_publishing(helo: bytes, by_host: bytes, queue_id: bytes,
                                               headers: list[tuple[bytes, bytes]]) -> None:
    app, publisher = milter()
    app.end_of_headers(session(helo, by_host, headers, queue_id))
    good = Session("test")
    good.family, good.address, good.helo, good.headers = "4", "192.0.2.10", "ex01.contoso.com", exchange_headers()
    app.end_of_headers(good)
    producer = RecordingProducer()
    publisher._flush_once(producer)  # type: ignore[arg-type]

    m = publisher.metrics
    assert m.records_accepted + dropped(publisher) == 2
    assert m.records_dropped_internal_error == 0
    assert m.records_delivered == m.records_accepted  # every accepted record reached the producer
    records = []
    for key, value in producer.produced:
        envelope = orjson.loads(value)
        contracts.metadata_batch(envelope)
        assert envelope["server_key"].encode() == key
        for record in envelope["records"]:
            contracts.metadata_record(record)
            records.append(record)
    assert any(r["client"]["helo"] == "ex01.contoso.com" for r in records)  # the good message went out
