"""The API's HTTP connections: a bound on their number, a deadline for request headers, JSON errors.

aiohttp's server has no timeout for reading a request's line and headers (at best its keep-alive
timeout, 3630 s by default, in recent versions only), so a client that sends them a byte at a time
(slowloris) holds a connection and its task for an hour or more. Here each
connection gets a header deadline of ``read_timeout_s`` seconds: armed when the connection opens and
again when a response is finished with no further request queued, disarmed as soon as a complete
request line and headers have been parsed. A connection whose headers are not complete by then is
closed and counted in ``patchgate_api_header_timeouts_total``. On a keep-alive connection the same
deadline is the longest idle wait between requests. (The body is bounded separately, by the
handlers, with the same number of seconds.)

Connections are bounded too: beyond ``max_connections`` open at once, a new connection is closed
at once (``patchgate_api_connections_refused_total``), so slow clients cannot use up the process's
file descriptors; ``patchgate_api_connections`` is the number open.

Errors that aiohttp answers before any handler runs (a malformed request line or header, a line
longer than 8190 bytes) get the same JSON error body as every other error, without the offending
bytes, and are logged at debug level only: they are client mistakes, not server faults.

This subclasses aiohttp's ``RequestHandler`` and reads its queue of parsed requests (``_messages``);
``tests/api/test_hostile_clients.py`` drives every path over real sockets, so an aiohttp upgrade that
changes these internals fails there.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from prometheus_client import Counter, Gauge

from processors.api.errors import error_body, status_code
from processors.metrics import REGISTRY

log = logging.getLogger(__name__)

HEADER_TIMEOUTS = Counter("patchgate_api_header_timeouts_total",
                          "API connections closed because their request headers were not complete in time",
                          registry=REGISTRY)
CONNECTIONS_REFUSED = Counter("patchgate_api_connections_refused_total",
                              "API connections closed at once because max_connections were open", registry=REGISTRY)
OPEN_CONNECTIONS = Gauge("patchgate_api_connections", "API connections open", registry=REGISTRY)
MALFORMED_REQUESTS = Counter("patchgate_api_malformed_requests_total",
                             "API requests refused before routing because they were not valid HTTP",
                             registry=REGISTRY)

DEFAULT_READ_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 512
PARSE_ERROR_MESSAGE = ("the request is not valid HTTP/1.1 (malformed request line or header, or a line or "
                       "header longer than 8190 bytes)")


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol with a header deadline and JSON error answers."""

    def __init__(self, manager: web.Server, *, read_timeout_s: float, max_connections: int, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._read_timeout_s = read_timeout_s
        self._max_connections = max_connections
        self._header_deadline: asyncio.TimerHandle | None = None
        self._open = False

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self._loop.call_later(self._read_timeout_s, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self.transport is None:
            return
        HEADER_TIMEOUTS.inc()
        log.debug("closing a connection whose request headers were not complete within %.1fs",
                  self._read_timeout_s)
        self.force_close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        manager = self._manager
        super().connection_made(transport)
        self._open = True
        OPEN_CONNECTIONS.inc()
        if manager is not None and len(manager.connections) > self._max_connections:
            CONNECTIONS_REFUSED.inc()
            log.debug("refusing a connection: %d connections are open", self._max_connections)
            self.force_close()
            return
        self._arm_header_deadline()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_deadline()
        if self._open:
            self._open = False
            OPEN_CONNECTIONS.dec()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages:  # a request line and its headers are complete
            self._disarm_header_deadline()

    async def finish_response(self, request: BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        result = await super().finish_response(request, resp, start_time)
        if not self._messages and self.transport is not None:
            self._arm_header_deadline()  # waiting for the next request on this connection
        return result

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started; cannot send an error instead")
        if status >= 500:
            log.error("error serving %s %s", request.method, request.path, exc_info=exc)
            text = "internal error"
        else:
            MALFORMED_REQUESTS.inc()
            log.debug("malformed request from %s: %s", request.remote, exc)
            text = PARSE_ERROR_MESSAGE
        response = web.Response(status=status, body=error_body(status_code(status), text),
                                content_type="application/json")
        response.force_close()
        return response


class GuardedServer(web.Server):
    """aiohttp's low-level server, creating :class:`GuardedRequestHandler` connections."""

    def __init__(self, template: web.Server, read_timeout_s: float, max_connections: int) -> None:
        super().__init__(template.request_handler, request_factory=template.request_factory,
                         handler_cancellation=template.handler_cancellation, loop=template._loop,
                         **template._kwargs)
        self.read_timeout_s = read_timeout_s
        self.max_connections = max_connections

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, read_timeout_s=self.read_timeout_s,
                                     max_connections=self.max_connections, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are bounded, have a header deadline and answer JSON errors."""

    def __init__(self, app: web.Application, *, read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, **kwargs: Any) -> None:
        if not read_timeout_s > 0 or max_connections < 1:
            raise ValueError("read_timeout_s and max_connections must be positive")
        super().__init__(app, **kwargs)
        self.read_timeout_s = read_timeout_s
        self.max_connections = max_connections

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self.read_timeout_s, self.max_connections)
