"""Policy service over real sockets: Postfix keep-alive mode and Exim close-after-reply mode."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import orjson

from edge.config import Connector, config_from_connectors
from edge.policy.codec import encode_request
from edge.policy.server import PolicyServer, PolicyService
from edge.verdicts import VerdictIndex
from tests.edge.helpers import T0, verdict


def service() -> PolicyService:
    idx = VerdictIndex()
    for r in (verdict("contoso/ex01.contoso.com", throttle=60),
              verdict("contoso/ex02.contoso.com", stage=8, throttle=0, block=60, client_ips=["192.0.2.22"])):
        idx.apply_raw(r["server_key"].encode(), orjson.dumps(r))
    idx.caught_up = True
    cfg = config_from_connectors([
        Connector("onprem", "contoso", "OnPremises", (ipaddress.ip_network("192.0.2.0/25"),)),
        Connector("partner", "contoso", "Partner", (ipaddress.ip_network("192.0.2.128/25"),)),
    ])
    return PolicyService(cfg, idx, clock=lambda: T0 + 120)


def req(ip: str, helo: str, state: str = "RCPT") -> dict[str, str]:
    return {"request": "smtpd_access_policy", "protocol_state": state, "client_address": ip,
            "helo_name": helo, "sender": "a@contoso.com", "recipient": "b@example.net"}


def test_respond_rules() -> None:
    s = service()
    assert s.respond(req("192.0.2.10", "EX01.contoso.com.")).startswith("450 4.7.230 ")
    assert s.respond(req("192.0.2.22", "whatever.local")).startswith("550 5.7.230 ")  # by client IP
    assert s.respond(req("192.0.2.10", "ex03.contoso.com")) == "DUNNO"
    assert s.respond(req("192.0.2.200", "ex01.contoso.com")) == "DUNNO"  # Partner: out of scope
    assert s.respond(req("198.51.100.1", "ex01.contoso.com")) == "DUNNO"  # no connector
    assert s.respond({}) == "DUNNO"
    m = s.metrics
    assert (m.throttled, m.blocked, m.accepted, m.dunno_out_of_scope, m.dunno_unmatched) == (1, 1, 1, 1, 2)


async def _read_replies(reader: asyncio.StreamReader, n: int) -> list[bytes]:
    return [await reader.readuntil(b"\n\n") for _ in range(n)]


def test_postfix_mode_keeps_connection_and_pipelines(tmp_path: Path) -> None:
    async def main() -> None:
        server = PolicyServer(service())
        sock = str(tmp_path / "policy.sock")
        await server.listen_unix(sock)
        try:
            reader, writer = await asyncio.open_unix_connection(sock)
            stream = encode_request(req("192.0.2.10", "ex01.contoso.com")) \
                + encode_request(req("192.0.2.10", "ex09.contoso.com"))
            for i in range(0, len(stream), 7):  # split writes
                writer.write(stream[i:i + 7])
                await writer.drain()
            r1, r2 = await asyncio.wait_for(_read_replies(reader, 2), 5)
            assert r1.startswith(b"action=450 4.7.230 Connecting Exchange server")
            assert r2 == b"action=DUNNO\n\n"
            writer.write(encode_request(req("192.0.2.22", "x")))
            [r3] = await asyncio.wait_for(_read_replies(reader, 1), 5)
            assert r3.startswith(b"action=550 5.7.230 ")
            writer.write(b"garbage without equals\n\n")
            assert await asyncio.wait_for(reader.read(), 5) == b""  # error: closed, nothing sent
            writer.close()
        finally:
            await server.close()
        assert server.service.metrics.protocol_errors == 1
    asyncio.run(main())


def test_exim_mode_closes_after_reply_and_accepts_eof_terminated_request() -> None:
    async def main() -> None:
        server = PolicyServer(service(), close_after_reply=True)
        port = await server.listen_tcp()
        try:
            # Like ${readsocket}: write the request, shut down the write side, read to EOF.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"client_address=192.0.2.10\nhelo_name=ex01.contoso.com\n")
            writer.write_eof()
            data = await asyncio.wait_for(reader.read(), 5)
            assert data.startswith(b"action=450 4.7.230 ") and data.endswith(b"\n\n")
            writer.close()
            # A complete request is answered at once and the server closes.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(encode_request(req("192.0.2.10", "ex07.contoso.com")))
            assert await asyncio.wait_for(reader.read(), 5) == b"action=DUNNO\n\n"
            writer.close()
        finally:
            await server.close()
    asyncio.run(main())
