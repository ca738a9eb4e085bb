"""Every edge input is bounded, and client addresses are normalised, over real sockets.

In-process milter and policy servers on real Unix sockets: a second OPTNEG, a silent connection,
one connection too many, an empty policy request, too many headers and a client that writes without
reading replies are each met with the configured bound, counted; the client address the MTA hands
over (``[192.0.2.10]``, ``IPv6:...``, ``{client_addr}``) is matched, published and looked up
normalised. (The flood against the real ``edge milter`` process is in ``test_milter_flood.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from edge.listeners import ConnectionLimits
from edge.milter.codec import (
    SMFIC_CONNECT,
    SMFIC_HEADER,
    SMFIR_ACCEPT,
    SMFIR_REPLYCODE,
    encode_connect,
    encode_macro,
    encode_optneg,
    encode_strings,
)
from edge.milter.driver import MilterDriver
from edge.milter.server import AcceptAll, MilterServer, Session
from edge.policy.codec import encode_request
from edge.policy.server import PolicyServer
from tests.edge.helpers import exchange_headers, verdict
from tests.edge.test_milter_server import make_app
from tests.edge.test_policy_server import req, service

DEADLINE = 10.0


async def until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Wait for ``condition`` on the running loop (which also runs the servers), with a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.005)


def serve_milter(app: object, body: Callable[[MilterServer, str], Awaitable[None]], tmp_path: Path,
                 **options: object) -> MilterServer:
    async def main() -> MilterServer:
        server = MilterServer(app, **options)  # type: ignore[arg-type]
        sock = str(tmp_path / "milter.sock")
        await server.listen_unix(sock)
        try:
            await asyncio.wait_for(body(server, sock), 20)
        finally:
            await server.close()
        return server
    return asyncio.run(main())


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server still sends before it closes the connection (EOF)."""
    return await asyncio.wait_for(reader.read(), DEADLINE)


# --- one OPTNEG per connection -------------------------------------------------------------------

def test_second_optneg_is_a_protocol_error_and_closes_the_connection(tmp_path: Path) -> None:
    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        for _ in range(3):  # each would have been answered with a larger reply
            d.writer.write(encode_optneg(6, 0x1FF, 0x1FFFFF))
        assert await closed_by_server(d.reader) == b""
    server = serve_milter(AcceptAll(), body, tmp_path)
    assert server.metrics.protocol_errors == 1


def test_distinct_macros_are_bounded_per_connection(tmp_path: Path) -> None:
    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        for batch in range(10):  # 1,000 distinct names, 100 per packet
            d.writer.write(encode_macro(SMFIC_CONNECT, {f"{{m{batch}_{i}}}": "v" for i in range(100)}))
        assert await closed_by_server(d.reader) == b""
    server = serve_milter(AcceptAll(), body, tmp_path)
    assert server.metrics.protocol_errors == 1


# --- idle timeout --------------------------------------------------------------------------------

def test_silent_connection_is_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        started = asyncio.get_running_loop().time()
        assert await closed_by_server(d.reader) == b""
        assert asyncio.get_running_loop().time() - started >= 0.25
        busy = await MilterDriver.unix(sock)  # input keeps a connection open past the timeout
        await busy.negotiate()
        loop = asyncio.get_running_loop()
        opened = loop.time()
        while loop.time() - opened < 0.6:  # twice the timeout, one message after the other
            assert await busy.message(headers=exchange_headers()) == (SMFIR_ACCEPT, b"")
        await busy.quit()
    server = serve_milter(AcceptAll(), body, tmp_path, limits=ConnectionLimits(idle_timeout=0.3))
    assert server.listener_metrics.idle_timeouts == 1


# --- maximum concurrent connections ---------------------------------------------------------------

def test_connections_beyond_the_maximum_are_closed_at_once_and_counted(tmp_path: Path) -> None:
    async def body(server: MilterServer, sock: str) -> None:
        kept = [await MilterDriver.unix(sock) for _ in range(2)]
        for d in kept:
            await d.negotiate()
        extra_reader, extra_writer = await asyncio.open_unix_connection(sock)
        assert await closed_by_server(extra_reader) == b""
        extra_writer.close()
        assert server.listener_metrics.connections_rejected_limit == 1
        for d in kept:  # the admitted connections keep working
            assert await d.message(headers=exchange_headers()) == (SMFIR_ACCEPT, b"")
        await kept[0].quit()
        await until(lambda: server.connection_count == 1)
        again = await MilterDriver.unix(sock)  # a freed slot is usable again
        await again.negotiate()
        await again.quit()
        await kept[1].quit()
    serve_milter(AcceptAll(), body, tmp_path, limits=ConnectionLimits(max_connections=2))


# --- headers per message --------------------------------------------------------------------------

def test_headers_beyond_the_limits_are_counted_not_stored_and_the_session_stays_correct(tmp_path: Path) -> None:
    app, pub = make_app(verdict("contoso/ex01.contoso.com", throttle=60))
    sessions: list[Session] = []
    original = app.end_of_headers

    def spy(session: Session) -> bytes:
        sessions.append(session)
        assert len(session.headers) <= 20
        return original(session)
    app.end_of_headers = spy  # type: ignore[method-assign]
    filler = [(f"X-Filler-{i}", "f" * 50) for i in range(500)]

    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        reply = await d.message(headers=[*exchange_headers(), *filler])
        assert reply[0] == SMFIR_REPLYCODE  # the Received headers were kept: still throttled
        await d.abort()
        assert await d.message(headers=exchange_headers("EX03.contoso.com"), connect=False) == (SMFIR_ACCEPT, b"")
        await d.quit()
    server = serve_milter(app, body, tmp_path, max_headers=20)
    first = pub.records[0][1]
    assert first["headers_truncated"]["dropped_headers"] == 7 + 500 - 20
    assert "milter stores" in first["headers_truncated"]["reason"]
    assert "headers_truncated" not in pub.records[1][1]  # the next message starts afresh
    assert server.metrics.headers_dropped == 487 and server.metrics.messages_headers_truncated == 1


def test_header_bytes_limit(tmp_path: Path) -> None:
    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        big = [(f"X-Big-{i}", "b" * 1000) for i in range(50)]
        assert await d.message(headers=big) == (SMFIR_ACCEPT, b"")
        await d.quit()
    server = serve_milter(AcceptAll(), body, tmp_path, max_header_bytes=10_000)
    assert server.metrics.headers_dropped == 50 - 9  # 9 headers of ~1,012 bytes fit in 10,000


# --- reply backpressure ---------------------------------------------------------------------------

def test_a_client_that_does_not_read_replies_stops_being_read(tmp_path: Path) -> None:
    """Legacy negotiation (every header answered); the client writes 200k headers and reads nothing."""
    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate(protocol=0)
        packet = encode_strings(SMFIC_HEADER, "X-Flood", "x")
        writer_task = asyncio.create_task(flood(d.writer, packet, 200_000))
        await until(lambda: server.listener_metrics.reads_paused >= 1)
        [conn] = server._connections
        buffered = conn.transport.get_write_buffer_size()
        assert buffered <= 64 * 1024 + 300_000  # the high-water mark plus at most one read's replies
        assert not writer_task.done()  # the client is stalled, not the server
        assert len(conn.session.headers) <= 1000
        writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer_task
        d.writer.transport.abort()
    serve_milter(AcceptAll(), body, tmp_path)


async def flood(writer: asyncio.StreamWriter, packet: bytes, count: int) -> None:
    chunk = packet * 1000
    for _ in range(count // 1000):
        writer.write(chunk)
        await writer.drain()


# --- policy service -------------------------------------------------------------------------------

def test_empty_policy_request_is_a_protocol_error(tmp_path: Path) -> None:
    async def main() -> PolicyServer:
        server = PolicyServer(service())
        sock = str(tmp_path / "policy.sock")
        await server.listen_unix(sock)
        try:
            reader, writer = await asyncio.open_unix_connection(sock)
            writer.write(encode_request(req("192.0.2.10", "ex01.contoso.com")))
            assert (await asyncio.wait_for(reader.readuntil(b"\n\n"), DEADLINE)).startswith(b"action=450 ")
            writer.write(b"\n" * 1000)  # a bare empty line is not a request: no reply for any of them
            assert await closed_by_server(reader) == b""
            writer.close()
        finally:
            await server.close()
        return server
    server = asyncio.run(main())
    m = server.service.metrics
    assert (m.requests, m.empty_requests, m.protocol_errors) == (1, 1, 1)


def test_policy_idle_timeout_max_connections_and_backpressure(tmp_path: Path) -> None:
    async def main() -> PolicyServer:
        server = PolicyServer(service(), limits=ConnectionLimits(max_connections=1, idle_timeout=0.3))
        sock = str(tmp_path / "policy.sock")
        await server.listen_unix(sock)
        try:
            _, writer = await asyncio.open_unix_connection(sock)
            await until(lambda: server.connection_count == 1)
            refused_reader, refused_writer = await asyncio.open_unix_connection(sock)
            assert await closed_by_server(refused_reader) == b""
            refused_writer.close()
            request = encode_request(req("192.0.2.10", "ex09.contoso.com"))  # 13 bytes of reply each
            task = asyncio.create_task(flood(writer, request, 1_000_000))
            await until(lambda: server.listener_metrics.reads_paused >= 1)
            assert not task.done()
            # the client never reads: no input gets through either, and the idle timer closes it
            await until(lambda: server.listener_metrics.idle_timeouts == 1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        finally:
            await server.close()
        return server
    server = asyncio.run(main())
    assert server.listener_metrics.connections_rejected_limit == 1
    assert server.service.metrics.requests < 1_000_000


def test_policy_client_address_is_normalised() -> None:
    s = service()
    assert s.respond(req("[192.0.2.10]", "ex01.contoso.com")).startswith("450 4.7.230 ")
    assert s.respond(req("::ffff:192.0.2.22", "whatever")).startswith("550 5.7.230 ")  # verdict client_ips
    assert s.respond(req("not-an-ip", "ex01.contoso.com")) == "DUNNO"
    assert s.metrics.client_address_unparseable == 1


# --- milter client addresses ----------------------------------------------------------------------

@pytest.mark.parametrize(("address", "family", "published"), [
    ("[192.0.2.10]", "4", "192.0.2.10"),
    ("IPv6:::ffff:192.0.2.10", "6", "192.0.2.10"),
    (" 192.0.2.10 ", "4", "192.0.2.10"),
])
def test_milter_publishes_and_matches_the_normalised_connect_address(
        tmp_path: Path, address: str, family: str, published: str) -> None:
    app, pub = make_app(verdict("contoso/ex01.contoso.com", throttle=60))

    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        connect = encode_macro(SMFIC_CONNECT, {"j": "edge.example"}) \
            + encode_connect("ex01.contoso.com", family, 25, address)
        assert await d.send(SMFIC_CONNECT, connect) is not None
        reply = await d.message(headers=exchange_headers(), connect=False)
        assert reply[0] == SMFIR_REPLYCODE
        await d.quit()
    serve_milter(app, body, tmp_path)
    assert pub.records[0][1]["client"]["ip"] == published


def test_milter_normalises_the_client_addr_macro_and_counts_an_unparseable_address(tmp_path: Path) -> None:
    app, pub = make_app(verdict("contoso/ex01.contoso.com", throttle=60))

    async def session_with(d: MilterDriver, client_addr: str) -> tuple[bytes, bytes]:
        connect = encode_macro(SMFIC_CONNECT, {"{client_addr}": client_addr}) \
            + encode_connect("unknown", "U", 0, "")
        await d.send(SMFIC_CONNECT, connect)
        return await d.message(headers=exchange_headers(), connect=False)

    async def body(server: MilterServer, sock: str) -> None:
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        assert (await session_with(d, "[192.0.2.10]"))[0] == SMFIR_REPLYCODE
        await d.quit()
        d = await MilterDriver.unix(sock)
        await d.negotiate()
        assert await session_with(d, "[192.0.2.999]") == (SMFIR_ACCEPT, b"")  # unknown client: not enforced
        await d.quit()
    serve_milter(app, body, tmp_path)
    assert [r["client"]["ip"] for _, r in pub.records] == ["192.0.2.10"]  # nothing published without an IP
    assert app.metrics.client_address_unparseable >= 1 and app.metrics.unmatched == 1
