"""The API against hostile and careless clients over raw sockets: bytes that are not UTF-8, absurd query
values, malformed HTTP, oversized and trickled bodies, slowloris headers. Every answer is JSON with a
stable ``error`` code and never a 5xx; a connection that does not finish its headers is closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
import pytest

from processors.metrics import REGISTRY
from tests.api.helpers import OPERATOR_TOKEN, TENANT_A_TOKEN, RunningApi, create_topic, running_api

PAUSES = "/v1/tenants/contoso/pauses"


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, object]:
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        document = orjson.loads(self.body)
        assert isinstance(document, dict)
        return document


def parse_answer(raw: bytes) -> RawAnswer:
    assert raw, "the server closed the connection without an answer"
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(status, headers, body)


def request_bytes(method: str, target: str, headers: dict[str, bytes] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def port_of(api: RunningApi) -> int:
    return int(api.base.rsplit(":", 1)[1])


async def exchange(api: RunningApi, raw: bytes, timeout: float = 10.0) -> RawAnswer:
    """Send raw bytes, read until the server closes the connection (every request says Connection: close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(api))
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return parse_answer(answer)


def bearer(token: bytes = TENANT_A_TOKEN.encode()) -> dict[str, bytes]:
    return {"Authorization": b"Bearer " + token}


@asynccontextmanager
async def api_for(redis_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str],
                  read_timeout_s: float = 10.0, body_timeout_s: float | None = None,
                  max_connections: int = 512) -> AsyncIterator[RunningApi]:
    topic = unique_name("commands")
    create_topic(kafka_bootstrap, topic)
    async with running_api(redis_url, kafka_bootstrap, unique_name("pg"), topic,
                           read_timeout_s=read_timeout_s, body_timeout_s=body_timeout_s,
                           max_connections=max_connections) as api:
        yield api


def assert_error(answer: RawAnswer, status: int, code: str) -> None:
    assert answer.status == status, (answer.status, answer.body[:300])
    document = answer.json
    assert document["error"] == code, document
    assert isinstance(document["message"], str) and document["message"]


@pytest.mark.integration
def test_authorization_bytes_that_are_not_utf8_get_401(redis_url: str, kafka_bootstrap: str,
                                                       unique_name: Callable[[str], str]) -> None:
    async def scenario() -> None:
        async with api_for(redis_url, kafka_bootstrap, unique_name) as api:
            for token in (b"\xff\xfe-not-utf-8-at-all-0123456789", TENANT_A_TOKEN.encode() + b"\xff",
                          b"\xed\xa0\x80-a-lone-surrogate-as-utf-8-bytes", b"\x80"):
                answer = await exchange(api, request_bytes("GET", PAUSES, bearer(token)))
                assert_error(answer, 401, "unauthorized")
                assert answer.headers["www-authenticate"].startswith("Bearer")
            # a non-UTF-8 byte in some other header does not disturb a valid token
            answer = await exchange(api, request_bytes("GET", PAUSES, {**bearer(), "X-Note": b"caf\xe9"}))
            assert answer.status == 200 and answer.json["tenant_id"] == "contoso"

    asyncio.run(scenario())


@pytest.mark.integration
def test_limit_is_parsed_strictly(redis_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    async def scenario() -> None:
        async with api_for(redis_url, kafka_bootstrap, unique_name) as api:
            url = "/v1/tenants/contoso/notifications?limit="
            # superscript two passes str.isdigit() but not int(); the Arabic-Indic one passes both but is not
            # ASCII; 5,000 digits must be refused before any conversion
            for value in ("%C2%B2", "%D9%A1", "9" * 5000, "0", "501", "-1", "+5", "%205", "5.0", "0x10", "", "1e3"):
                answer = await exchange(api, request_bytes("GET", url + value, bearer()))
                assert_error(answer, 400, "invalid_limit")
                assert "1 to 500" in str(answer.json["message"])
            for value in ("1", "500", "007"):
                answer = await exchange(api, request_bytes("GET", url + value, bearer()))
                assert answer.status == 200, value

    asyncio.run(scenario())


@pytest.mark.integration
def test_aiohttp_errors_are_json_with_a_code(redis_url: str, kafka_bootstrap: str,
                                             unique_name: Callable[[str], str]) -> None:
    async def scenario() -> None:
        async with api_for(redis_url, kafka_bootstrap, unique_name) as api:
            assert_error(await exchange(api, request_bytes("GET", "/no/such/path", bearer())), 404, "not_found")
            answer = await exchange(api, request_bytes("PUT", PAUSES, bearer()))
            assert_error(answer, 405, "method_not_allowed")
            assert set(answer.headers["allow"].split(",")) == {"GET", "POST", "DELETE"}
            # too large: declared by Content-Length, and chunked without a declared length
            answer = await exchange(api, request_bytes("POST", PAUSES, bearer(), b"x" * 20_000))
            assert_error(answer, 413, "body_too_large")
            chunk = b"x" * 20_000
            chunked = (request_bytes("POST", PAUSES, {**bearer(), "Transfer-Encoding": b"chunked"})
                       + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
            assert_error(await exchange(api, chunked), 413, "body_too_large")
            # malformed HTTP, answered by aiohttp before any route: JSON too, and a 400, not a 500
            for raw in (b"GARBAGE\r\n\r\n",
                        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n",
                        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
                        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                        b"POST " + PAUSES.encode()
                        + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
                answer = await exchange(api, raw)
                assert_error(answer, 400, "bad_request")
                assert b"aaaa" not in answer.body and b"zz" not in answer.body  # the offending bytes are not echoed

    asyncio.run(scenario())


@pytest.mark.integration
def test_no_client_input_gets_a_5xx(redis_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    async def scenario() -> None:
        async with api_for(redis_url, kafka_bootstrap, unique_name) as api:
            cases = [
                request_bytes("GET", "/v1/tenants/%FF%FE/servers", bearer()),
                request_bytes("GET", "/v1/tenants/" + "a" * 300 + "/servers", bearer()),
                request_bytes("GET", "/v1/tenants/contoso/servers?format=%FF" + "x" * 3000, bearer()),
                request_bytes("GET", "/v1/tenants/contoso/servers?format=json&format=csv%00", bearer()),
                request_bytes("GET", "/tenants/%C0%AF..%C0%AF", {}),
                request_bytes("GET", "/static/..%2F..%2Fetc%2Fpasswd", {}),
                request_bytes("GET", PAUSES, {"Authorization": b"Bearer"}),
                request_bytes("GET", PAUSES, {"Authorization": b"\xff\xff\xff"}),
                request_bytes("POST", PAUSES, {**bearer(), "Content-Type": b"application/json"}, b'{"days": 1e400}'),
                request_bytes("POST", PAUSES, {**bearer(), "Content-Type": b"application/json"},
                              b'{"days": 9' + b"9" * 5000 + b"}"),
                request_bytes("POST", PAUSES, {**bearer(), "Content-Type": b"application/json"}, b"\xff\xfe\x00"),
                request_bytes("POST", PAUSES, {**bearer(), "Content-Type": b"application/json"},
                              b'{"days": "\xff"}'),
                request_bytes("POST", PAUSES, {**bearer(), "Content-Encoding": b"gzip"}, b"not gzip at all"),
            ]
            for raw in cases:
                answer = await exchange(api, raw)
                assert 200 <= answer.status < 500, (raw[:120], answer.status, answer.body[:300])
                if answer.status >= 400:
                    assert isinstance(answer.json["error"], str), raw[:120]
            # a tenant id with a final newline is not a tenant id (a "$" anchor would let it through)
            operator = bearer(OPERATOR_TOKEN.encode())
            for method in ("GET", "POST"):
                answer = await exchange(api, request_bytes(method, "/v1/tenants/contoso%0A/pauses", operator,
                                                           b'{"days": 1}' if method == "POST" else b""))
                assert_error(answer, 400, "invalid_tenant")

    asyncio.run(scenario())


@pytest.mark.integration
def test_a_body_that_trickles_in_gets_408(redis_url: str, kafka_bootstrap: str,
                                          unique_name: Callable[[str], str]) -> None:
    async def scenario() -> None:
        # the header deadline (1 s) must be off once the headers are in: the answer comes from the body's (2 s)
        async with api_for(redis_url, kafka_bootstrap, unique_name, read_timeout_s=1.0, body_timeout_s=2.0) as api:
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(api))
            head = request_bytes("POST", PAUSES, {**bearer(), "Content-Type": b"application/json",
                                                  "Content-Length": b"100"})
            writer.write(head + b'{"da')  # complete headers, a body that never arrives
            await writer.drain()
            started = time.monotonic()
            answer = parse_answer(await asyncio.wait_for(reader.read(), 10))
            elapsed = time.monotonic() - started
            writer.close()
            assert_error(answer, 408, "request_timeout")
            assert 1.9 <= elapsed < 5, elapsed

    asyncio.run(scenario())


def header_timeouts() -> float:
    return REGISTRY.get_sample_value("patchgate_api_header_timeouts_total") or 0.0


async def trickle(writer: asyncio.StreamWriter, data: bytes, interval_s: float, sent: list[int]) -> None:
    """Send one byte per interval, as a slowloris client does, until the data ends or the peer is gone."""
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        sent.append(byte)
        await asyncio.sleep(interval_s)  # the attack's pace, not a synchronisation


@pytest.mark.integration
def test_slowloris_headers_are_cut_off(redis_url: str, kafka_bootstrap: str,
                                       unique_name: Callable[[str], str]) -> None:
    timeout = 2.0

    async def slow_client(api: RunningApi, preamble: bytes = b"") -> tuple[float, bytes, int]:
        """Trickle a request's headers one byte per second; the time until the server closes, what it sent."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(api))
        answered = b""
        if preamble:  # one complete request first: the deadline is armed again after its answer
            writer.write(preamble)
            await writer.drain()
            answered = await reader.readuntil(b"\r\n\r\n")
        started = time.monotonic()
        sent: list[int] = []
        sender = asyncio.create_task(trickle(writer, request_bytes("GET", PAUSES, bearer()), 1.0, sent))
        try:
            tail = await asyncio.wait_for(reader.read(), timeout + 5)  # returns at EOF: the server closed
        finally:
            sender.cancel()
            writer.close()
        return time.monotonic() - started, answered + tail, len(sent)

    async def scenario() -> None:
        async with api_for(redis_url, kafka_bootstrap, unique_name, read_timeout_s=timeout) as api:
            before = header_timeouts()
            elapsed, received, sent = await slow_client(api)
            assert received == b"" and 1 <= sent <= 4  # closed without an answer, mid-headers
            assert timeout - 0.2 <= elapsed < timeout + 1.5, elapsed
            keep_alive = (f"GET {PAUSES} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TENANT_A_TOKEN}\r\n"
                          "Content-Length: 0\r\n\r\n").encode()
            elapsed, received, sent = await slow_client(api, keep_alive)
            assert received.startswith(b"HTTP/1.1 200") and b'"tenant_id":"contoso"' in received
            assert timeout - 0.2 <= elapsed < timeout + 1.5, elapsed
            assert header_timeouts() - before == 2
            # meanwhile the API serves everybody else
            answer = await exchange(api, request_bytes("GET", PAUSES, bearer()))
            assert answer.status == 200

    asyncio.run(scenario())


@pytest.mark.integration
def test_connections_beyond_the_limit_are_closed_at_once(redis_url: str, kafka_bootstrap: str,
                                                         unique_name: Callable[[str], str]) -> None:
    async def scenario() -> None:
        async with api_for(redis_url, kafka_bootstrap, unique_name, max_connections=3) as api:
            refused_before = REGISTRY.get_sample_value("patchgate_api_connections_refused_total") or 0.0
            idle = [await asyncio.open_connection("127.0.0.1", port_of(api)) for _ in range(3)]
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(api))
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once, not after the deadline
            assert time.monotonic() - started < 2
            writer.close()
            assert (REGISTRY.get_sample_value("patchgate_api_connections_refused_total") or 0) - refused_before == 1
            _, first = idle.pop()
            first.close()
            await first.wait_closed()
            answer = await until_answered(api, request_bytes("GET", PAUSES, bearer()))
            assert answer.status == 200  # a slot came free: served again
            for _, other in idle:
                other.close()

    asyncio.run(scenario())


async def until_answered(api: RunningApi, raw: bytes, timeout: float = 5.0) -> RawAnswer:
    """Retry until the server has noticed a closed connection and answers (poll with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await exchange(api, raw)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


@pytest.mark.integration
def test_commands_still_flow_after_hostile_requests(redis_url: str, kafka_bootstrap: str,
                                                    unique_name: Callable[[str], str]) -> None:
    """The failures above leave the command path intact: a valid pause still reaches the broker."""
    async def scenario() -> None:
        async with api_for(redis_url, kafka_bootstrap, unique_name) as api:
            await exchange(api, b"GARBAGE\r\n\r\n")
            await exchange(api, request_bytes("GET", PAUSES, bearer(b"\xff")))
            answer = await exchange(api, request_bytes("POST", PAUSES, {**bearer(), "Content-Type":
                                                                        b"application/json"}, b'{"days": 2}'))
            assert answer.status == 202 and answer.json["status"] == "queued"

    asyncio.run(scenario())


def test_an_unexpected_error_is_logged_once_and_answered_without_internals(
        caplog: pytest.LogCaptureFixture) -> None:
    from aiohttp import web

    from processors.api.app import errors_middleware
    from processors.api.server import GuardedAppRunner

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("internal detail: redis://user:hunter2@db")

    async def scenario() -> RawAnswer:
        app = web.Application(middlewares=[errors_middleware])
        app.router.add_get("/broken", broken)
        runner = GuardedAppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
            writer.write(request_bytes("GET", "/broken"))
            answer = parse_answer(await asyncio.wait_for(reader.read(), 10))
            writer.close()
            return answer
        finally:
            await runner.cleanup()

    answer = asyncio.run(scenario())
    assert answer.status == 500 and answer.json == {"error": "internal_error", "message": "internal error"}
    logged = [r for r in caplog.records if r.exc_info and "hunter2" in str(r.exc_info[1])]
    assert len(logged) == 1 and logged[0].name == "processors.api.app"
