"""The asyncio milter server and PatchgateMilter, driven over real sockets by a Postfix-like client.

Kafka is not involved here: the verdict index is filled directly and published records are
collected in a list (the Kafka paths have their own integration tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.config import Connector, config_from_connectors
from edge.milter.app import PatchgateMilter
from edge.milter.codec import (
    SMFIC_EOH,
    SMFIC_HEADER,
    SMFIC_RCPT,
    SMFIP_NOBODY,
    SMFIP_NOEOH,
    SMFIP_NOHDRS,
    SMFIP_NR_HDR,
    SMFIR_ACCEPT,
    SMFIR_CONTINUE,
    SMFIR_REPLYCODE,
    encode_packet,
    encode_strings,
)
from edge.milter.driver import MilterDriver
from edge.milter.server import AcceptAll, MilterServer
from edge.verdicts import VerdictIndex
from processors.events.metadata import MetadataRecord
from tests.edge.helpers import T0, exchange_headers, verdict


def connectors() -> list[Connector]:
    return [
        Connector("contoso-onprem", "contoso", "OnPremises", (ipaddress.ip_network("192.0.2.0/25"),)),
        Connector("contoso-partner", "contoso", "Partner", (ipaddress.ip_network("192.0.2.128/25"),)),
    ]


class ListPublisher:
    def __init__(self) -> None:
        self.records: list[tuple[str, MetadataRecord]] = []

    def publish(self, server_key: str, record: MetadataRecord) -> bool:
        orjson.dumps(record)  # must be serialisable
        self.records.append((server_key, record))
        return True


def make_app(*records: dict[str, Any], now: float = T0 + 60) -> tuple[PatchgateMilter, ListPublisher]:
    idx = VerdictIndex()
    for r in records:
        assert idx.apply_raw(r["server_key"].encode(), orjson.dumps(r))
    idx.caught_up = True
    pub = ListPublisher()
    app = PatchgateMilter(config_from_connectors(connectors(), name="edge-t"), idx, pub, clock=lambda: now)
    return app, pub


def run(app: Any, body: Callable[[MilterServer, str], Awaitable[None]], tmp_path: Path) -> MilterServer:
    async def main() -> MilterServer:
        server = MilterServer(app)
        sock = str(tmp_path / "milter.sock")
        await server.listen_unix(sock)
        try:
            await asyncio.wait_for(body(server, sock), 10)
        finally:
            await server.close()
        return server
    return asyncio.run(main())


def reply_text(reply: tuple[bytes, bytes]) -> str:
    assert reply[0] == SMFIR_REPLYCODE, reply
    return reply[1].rstrip(b"\0").decode().replace("%%", "%")


def test_negotiation_requests_no_reply_flags_but_keeps_headers(tmp_path: Path) -> None:
    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        reply = await d.negotiate()
        assert reply.version == 6 and reply.actions == 0x100  # SMFIF_SETSYMLIST only: no edits
        assert reply.protocol & SMFIP_NR_HDR and reply.protocol & SMFIP_NOBODY
        assert not reply.protocol & (SMFIP_NOHDRS | SMFIP_NOEOH)
        # only the macros the application reads: CONNECT j, HELO TLS facts, EOH queue id
        assert dict(reply.macro_lists) == {0: "j", 1: "{tls_version} {cipher} {cert_subject}", 6: "i"}
        await d.quit()
    run(AcceptAll(), body, tmp_path)


def test_mta_without_symbol_lists_gets_no_macro_request(tmp_path: Path) -> None:
    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        reply = await d.negotiate(actions=0x0FF)  # an MTA that does not offer SMFIF_SETSYMLIST
        assert reply.actions == 0 and reply.macro_lists == ()
        await d.quit()
    run(AcceptAll(), body, tmp_path)


def test_legacy_mta_without_no_reply_flags_gets_continue_per_stage(tmp_path: Path) -> None:
    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        reply = await d.negotiate(protocol=0)  # offers nothing: every stage is answered
        assert reply.protocol == 0
        assert await d.send(SMFIC_HEADER, encode_strings(SMFIC_HEADER, "Subject", "x")) == (SMFIR_CONTINUE, b"")
        assert await d.send(SMFIC_RCPT, encode_strings(SMFIC_RCPT, "<b@x>")) == (SMFIR_CONTINUE, b"")
        assert await d.send(SMFIC_EOH, encode_packet(SMFIC_EOH)) == (SMFIR_ACCEPT, b"")
        await d.quit()
    run(AcceptAll(), body, tmp_path)


def test_throttle_block_accept_by_verdict(tmp_path: Path) -> None:
    app, pub = make_app(
        verdict("contoso/ex01.contoso.com", throttle=60),
        verdict("contoso/ex02.contoso.com", sequence=3, stage=8, throttle=0, block=60),
    )

    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        r1 = await d.message(headers=exchange_headers("EX01.contoso.com"), queue_id="Q1")
        assert reply_text(r1).startswith("450 4.7.230 Connecting Exchange server version is out-of-date;")
        await d.abort()
        r2 = await d.message(headers=exchange_headers("EX02.contoso.com"), queue_id="Q2", connect=False)
        assert reply_text(r2).startswith("550 5.7.230 ")
        await d.abort()
        r3 = await d.message(headers=exchange_headers("EX03.contoso.com"), queue_id="Q3", connect=False)
        assert r3 == (SMFIR_ACCEPT, b"")
        await d.quit()
    run(app, body, tmp_path)
    assert (app.metrics.throttled, app.metrics.blocked, app.metrics.accepted) == (1, 1, 1)
    keys = [k for k, _ in pub.records]
    assert keys == ["contoso/ex01.contoso.com", "contoso/ex02.contoso.com", "contoso/ex03.contoso.com"]
    rec = pub.records[0][1]
    assert rec["event_id"] == "edge-t:Q1"
    assert rec["tenant_id"] == "contoso" and rec["connector"] == {"id": "contoso-onprem", "type": "OnPremises"}
    assert rec["client"]["ip"] == "192.0.2.10" and rec["client"]["helo"] == "ex01.contoso.com"
    assert rec["message"] == {"id": "<abc@contoso.com>", "size": rec["message"]["size"], "recipients": 1}
    assert rec["headers"][0][0] == "Received" and "id 15.1.2507.6" in rec["headers"][0][1]


def test_current_build_in_header_overrides_enforcing_verdict(tmp_path: Path) -> None:
    app, _ = make_app(verdict("contoso/ex01.contoso.com", stage=8, throttle=0, block=60))

    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        assert await d.message(headers=exchange_headers(build="15.2.2562.53")) == (SMFIR_ACCEPT, b"")
        await d.quit()
    run(app, body, tmp_path)
    assert app.metrics.accepted_current_build == 1


def test_partner_connector_is_never_enforced_but_published(tmp_path: Path) -> None:
    app, pub = make_app(verdict("contoso/ex01.contoso.com", stage=8, throttle=0, block=60))

    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        assert await d.message(ip="192.0.2.200", headers=exchange_headers()) == (SMFIR_ACCEPT, b"")
        await d.quit()
    run(app, body, tmp_path)
    assert app.metrics.out_of_scope == 1
    assert pub.records[0][1]["connector"]["type"] == "Partner"


async def message_from_unmatched_client(server: MilterServer, sock: str) -> None:
    """One message from a client no IP-range connector covers; the milter accepts it."""
    d = await MilterDriver.unix(sock)
    await d.negotiate()
    assert await d.message(ip="198.51.100.7", headers=exchange_headers()) == (SMFIR_ACCEPT, b"")
    await d.quit()


def test_client_no_connector_can_match_is_let_go_at_connect(tmp_path: Path) -> None:
    app, pub = make_app(verdict("contoso/ex01.contoso.com", stage=8, throttle=0, block=60))
    run(app, message_from_unmatched_client, tmp_path)
    # answered at CONNECT: the MTA leaves the milter out of the connection, no message reached EOH
    assert (app.metrics.skipped_connections, app.metrics.messages, app.metrics.unmatched) == (1, 0, 0)
    assert pub.records == []


def test_unmatched_client_with_certificate_connectors_is_judged_per_message(tmp_path: Path) -> None:
    app, pub = make_app(verdict("contoso/ex01.contoso.com", stage=8, throttle=0, block=60))
    by_certificate = Connector("fabrikam", "fabrikam", "OnPremises", (), ("mail.fabrikam.com",))
    app.config = config_from_connectors([*connectors(), by_certificate], name="edge-t")
    run(app, message_from_unmatched_client, tmp_path)
    # the certificate is known only after STARTTLS: the milter stays on and decides at EOH
    assert (app.metrics.skipped_connections, app.metrics.messages, app.metrics.unmatched) == (0, 1, 1)
    assert pub.records == []


def test_stripped_headers_fall_back_to_learned_ip(tmp_path: Path) -> None:
    app, _ = make_app(verdict("contoso/ex01.contoso.com", stage=8, throttle=0, block=60))
    app.cache.learn_ip("192.0.2.10", "contoso/ex01.contoso.com")
    stripped = [("From", "a@contoso.com"), ("Subject", "no received headers")]

    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        r = await d.message(helo="mail.contoso.com", headers=stripped)
        assert reply_text(r).startswith("550 5.7.230 ")
        await d.quit()
    run(app, body, tmp_path)
    assert app.metrics.ip_hint_used == 1


def test_malformed_connection_closed_others_keep_working(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body(server: MilterServer, sock: str) -> None:
        good = await MilterDriver.unix(sock)
        await good.negotiate()
        bad = await MilterDriver.unix(sock)
        bad.writer.write(struct.pack(">I", 50_000_000) + b"L")
        assert await bad.reader.read() == b""  # closed by the server
        bad2 = await MilterDriver.unix(sock)
        await bad2.negotiate()
        bad2.writer.write(encode_packet(b"C", b"truncated"))
        assert await bad2.reader.read() == b""
        bad3 = await MilterDriver.unix(sock)
        bad3.writer.write(encode_packet(b"Z", b""))
        assert await bad3.reader.read() == b""
        assert await good.message(headers=exchange_headers()) == (SMFIR_ACCEPT, b"")
        await good.quit()
    server = run(AcceptAll(), body, tmp_path)
    assert server.metrics.protocol_errors == 3
    assert "exceeds the limit" in caplog.text and "unknown command" in caplog.text


def test_application_exception_fails_open(tmp_path: Path) -> None:
    class Broken(AcceptAll):
        def end_of_headers(self, session: Any) -> bytes:
            raise RuntimeError("bug")

    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        assert await d.message(headers=exchange_headers()) == (SMFIR_ACCEPT, b"")
        await d.quit()
    server = run(Broken(), body, tmp_path)
    assert server.metrics.application_errors == 1


def test_tcp_listener_and_many_concurrent_sessions() -> None:
    app, pub = make_app(verdict("contoso/ex01.contoso.com", throttle=60))

    async def main() -> None:
        server = MilterServer(app)
        port = await server.listen_tcp("127.0.0.1", 0)

        async def one(i: int) -> tuple[bytes, bytes]:
            d = await MilterDriver.tcp("127.0.0.1", port)
            await d.negotiate()
            r = await d.message(headers=exchange_headers("EX01.contoso.com" if i % 2 else "EX05.contoso.com"),
                                queue_id=f"Q{i}")
            await d.quit()
            return r

        try:
            replies = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(40))), 10)
        finally:
            await server.close()
        assert sum(r[0] == SMFIR_REPLYCODE for r in replies) == 20
        assert sum(r == (SMFIR_ACCEPT, b"") for r in replies) == 20

    asyncio.run(main())
    assert len(pub.records) == 40


def test_edge_own_received_header_is_skipped(tmp_path: Path) -> None:
    app, pub = make_app(verdict("contoso/ex01.contoso.com", throttle=60))
    own = ("Received", "from ex01.contoso.com (ex01.contoso.com [192.0.2.10]) by edge.example (Postfix) "
                       "with ESMTP id 4XyZ1 for <b@example.net>; Sat, 28 Nov 2026 10:00:01 +0000 (UTC)")

    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()  # the driver sends j=edge.example at CONNECT, as Postfix does
        r = await d.message(headers=[own, *exchange_headers("EX01.contoso.com")])
        assert reply_text(r).startswith("450 4.7.230 ")
        await d.quit()
    run(app, body, tmp_path)
    assert "by edge.example" not in pub.records[0][1]["headers"][0][1]
