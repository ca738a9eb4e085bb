"""Policy service: Postfix ``check_policy_service`` and Exim ``${readsocket}`` answers from the cache.

Per request: the connector is found by ``client_address`` (and ``ccert_subject``). Out of scope or
unknown: ``DUNNO``. Otherwise the server key is, in this order, the client IP's hint from the verdict
cache (verdict ``client_ips`` or learned by a milter in the same process) of the connector's tenant,
then ``<tenant>/<helo_name lower-case>``; the first key with a verdict decides. Throttle/block answer
``action=450 4.7.230 ...`` / ``action=550 5.7.230 ...`` (Postfix then replies
``450 4.7.230 <name>: <Class> rejected: ...``: the policy protocol cannot send the text verbatim; the
milter can). A verdict in shadow mode answers ``DUNNO`` and the withheld reply is counted and logged
(:mod:`edge.shadow`). The policy service never sees headers, so it cannot exempt a message whose own header
shows a patched build; use the milter where that matters.

Postfix mode keeps the connection open for further requests. ``close_after_reply`` mode (Exim)
answers one request, then closes; a request ended by EOF instead of an empty line is accepted.
Protocol errors (among them an empty request): log, count, send nothing, disconnect. Connections
are bounded by the listener's :class:`~edge.listeners.ConnectionLimits` (count, idle time, and
reading stops while replies are unwritten).

``client_address`` is normalised like the milter's (:func:`edge.config.normalise_ip`); one that is
no IP address is treated as unknown (counted as ``client_address_unparseable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.config import EdgeConfig, normalise_ip
from edge.listeners import ConnectionLimits, LimitedProtocol, Listeners
from edge.policy.codec import EmptyPolicyRequest, PolicyDecoder, PolicyProtocolError, encode_action
from edge.verdicts import ACCEPT_UNKNOWN, VerdictIndex

log = logging.getLogger(__name__)

DUNNO = "DUNNO"
#: Postfix closes a policy connection idle for smtpd_policy_service_max_idle (300 s): ours is longer,
#: so Postfix closes first and never finds a connection we dropped under it.
DEFAULT_IDLE_TIMEOUT = 330.0


@dataclass(slots=True)
class PolicyMetrics:
    requests: int = 0
    dunno_unmatched: int = 0
    dunno_out_of_scope: int = 0
    accepted: int = 0
    throttled: int = 0
    blocked: int = 0
    protocol_errors: int = 0
    empty_requests: int = 0
    errors: int = 0
    connections: int = 0
    client_address_unparseable: int = 0


class PolicyService:
    """Turns one request (attribute dict) into one action string."""

    def __init__(self, config: EdgeConfig, cache: VerdictIndex, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.cache = cache
        self.clock = clock
        self.metrics = PolicyMetrics()

    def respond(self, request: dict[str, str]) -> str:
        m = self.metrics
        m.requests += 1
        ip = self._client_ip(request.get("client_address"))
        connector = self.config.match(ip, request.get("ccert_subject") or None)
        if connector is None:
            m.dunno_unmatched += 1
            return DUNNO
        if not self.config.in_scope(connector):
            m.dunno_out_of_scope += 1
            return DUNNO
        now = self.clock()
        prefix = connector.tenant_id + "/"
        decision = ACCEPT_UNKNOWN
        if ip is not None:
            hint = self.cache.server_key_for_ip(ip)
            if hint is not None and hint.startswith(prefix):
                decision = self.cache.decide(hint, now)
        if decision is ACCEPT_UNKNOWN:
            helo = request.get("helo_name", "").strip().rstrip(".").lower()
            if helo and not helo.startswith("["):
                decision = self.cache.decide(prefix + helo, now)
        if decision.enforced and decision.reply:
            if decision.action == "block":
                m.blocked += 1
            else:
                m.throttled += 1
            return decision.reply
        if decision.shadow_reply is not None:  # shadow mode: count and log what the reply would have been
            self.cache.shadow.record(decision, client=ip)
        m.accepted += 1
        return DUNNO

    def _client_ip(self, raw: str | None) -> str | None:
        if not raw or raw == "unknown":
            return None
        ip = normalise_ip(raw)
        if ip is None:
            self.metrics.client_address_unparseable += 1
        return ip


class PolicyProtocol(LimitedProtocol):
    def __init__(self, server: PolicyServer) -> None:
        self.server = server
        self.listener = server
        self.decoder = PolicyDecoder(server.max_request)
        self.transport: asyncio.Transport | None = None
        self.peer = "unix"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.admit(transport):
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer)
        self.server.service.metrics.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()

    def peer_name(self) -> str:
        return self.peer

    def _answer(self, request: dict[str, str]) -> bytes:
        try:
            return encode_action(self.server.service.respond(request))
        except Exception:
            self.server.service.metrics.errors += 1
            log.exception("policy request failed; answering DUNNO (fail open)")
            return encode_action(DUNNO)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        self.touch()
        try:
            requests = self.decoder.feed(data)
        except PolicyProtocolError as exc:
            self.server.service.metrics.protocol_errors += 1
            if isinstance(exc, EmptyPolicyRequest):
                self.server.service.metrics.empty_requests += 1
            log.warning("policy connection %s closed: protocol error: %s", self.peer, exc)
            transport.abort()
            return
        if not requests:
            return
        if self.server.close_after_reply:
            transport.write(self._answer(requests[0]))
            transport.close()
            return
        transport.write(b"".join(self._answer(r) for r in requests))

    def eof_received(self) -> bool | None:
        transport = self.transport
        if transport is not None and self.server.close_after_reply:
            try:
                request = self.decoder.finish()
            except PolicyProtocolError as exc:
                self.server.service.metrics.protocol_errors += 1
                log.warning("policy connection %s closed: protocol error: %s", self.peer, exc)
                return None
            if request is not None:
                transport.write(self._answer(request))
        return None  # close our side too


class PolicyServer(Listeners):
    """Serves a :class:`PolicyService` on Unix sockets and/or TCP ports."""

    def __init__(self, service: PolicyService, *, close_after_reply: bool = False,
                 max_request: int = 32 * 1024, limits: ConnectionLimits | None = None) -> None:
        super().__init__(limits or ConnectionLimits(idle_timeout=DEFAULT_IDLE_TIMEOUT))
        self.service = service
        self.close_after_reply = close_after_reply
        self.max_request = max_request

    def protocol(self) -> PolicyProtocol:
        return PolicyProtocol(self)
