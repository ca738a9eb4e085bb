"""asyncio milter server: one :class:`MilterProtocol` per MTA connection, on a Unix socket and/or TCP.

The transport layer tracks the SMTP session (macros, CONNECT, HELO, envelope, headers) in a
:class:`Session` and asks a :class:`MilterApplication` for the reply at end-of-headers and
end-of-message; every other stage is acknowledged (or, when the MTA agreed to the "no reply" flags,
not acknowledged at all). All handling is synchronous inside ``data_received``: replies to every
packet of one read go out in one write, no task is created per packet.

Malformed input (bad framing, payloads, commands, a second OPTNEG) closes that connection with one
log line; the listener keeps serving the others. Every connection is bounded: the listener's
:class:`~edge.listeners.ConnectionLimits` (connections, idle time, unwritten replies: reading stops
while the MTA does not read our replies) and, per message, ``max_headers`` headers and
``max_header_bytes`` bytes of them stored (the rest is counted in :attr:`Session.headers_dropped`;
the session itself stays correct); more than ``MAX_MACROS`` distinct macro names is a protocol
error. An exception in the application is logged and answered with ACCEPT (fail open), so a bug
never turns into Postfix's ``milter_default_action``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Protocol

from edge.listeners import ConnectionLimits, LimitedProtocol, Listeners
from edge.milter.codec import (
    ACCEPT_PACKET,
    CONTINUE_PACKET,
    DEFAULT_MAX_PACKET,
    MILTER_VERSION,
    NO_REPLY_ANY,
    NO_REPLY_FLAG,
    SMFIC_ABORT,
    SMFIC_BODY,
    SMFIC_BODYEOB,
    SMFIC_CONNECT,
    SMFIC_DATA,
    SMFIC_EOH,
    SMFIC_HEADER,
    SMFIC_HELO,
    SMFIC_MACRO,
    SMFIC_MAIL,
    SMFIC_OPTNEG,
    SMFIC_QUIT,
    SMFIC_QUIT_NC,
    SMFIC_RCPT,
    SMFIC_UNKNOWN,
    SMFIF_SETSYMLIST,
    SMFIM_CONNECT,
    SMFIM_EOH,
    SMFIM_HELO,
    SMFIP_NOBODY,
    SMFIP_NODATA,
    SMFIP_NOUNKNOWN,
    SMFIP_NR_DATA,
    SMFIP_NR_HDR,
    SMFIP_NR_HELO,
    SMFIP_NR_MAIL,
    SMFIP_NR_RCPT,
    SMFIP_NR_UNKN,
    MilterDecoder,
    MilterProtocolError,
    encode_optneg,
    parse_connect,
    parse_header,
    parse_macros,
    parse_optneg,
    parse_strings,
)

log = logging.getLogger(__name__)

#: What we ask the MTA for: every stage from HELO to end-of-headers without waiting for our reply,
#: no body (the decision is taken at end-of-headers), no DATA/unknown-command callbacks. Headers and
#: EOH stay on: that is where the Exchange build is. CONNECT is answered (once per connection): an
#: ACCEPT there makes Postfix leave the milter out of the whole connection, so mail from clients no
#: connector can match costs no milter work per message. Intersected with what the MTA offers.
DESIRED_PROTOCOL = (
    SMFIP_NOBODY | SMFIP_NODATA | SMFIP_NOUNKNOWN
    | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR
    | SMFIP_NR_DATA | SMFIP_NR_UNKN
)
#: We never modify messages; we only ask to choose our own macros (SMFIF_SETSYMLIST).
DESIRED_ACTIONS = SMFIF_SETSYMLIST
#: The macros the application reads, by stage. Postfix sends about a dozen macro sets per message
#: by default (MAIL, RCPT, DATA, EOH, EOM lists); asking for these only leaves one per message
#: (``i`` at end-of-headers) and cuts packets, parsing and context switches on both sides.
#: Headers stored per message: the Exchange build is in the topmost Received headers, and the
#: published record keeps at most 500 headers and 64 KiB (:mod:`edge.publisher`).
DEFAULT_MAX_HEADERS = 1000
DEFAULT_MAX_HEADER_BYTES = 256 * 1024
#: Distinct macro names kept per connection: Postfix sends a few dozen at most; more is an error.
MAX_MACROS = 512

MACRO_LISTS = {
    SMFIM_CONNECT: "j",
    SMFIM_HELO: "{tls_version} {cipher} {cert_subject}",
    SMFIM_EOH: "i",
}


class Session:
    """One SMTP session as the milter sees it. Message fields reset at MAIL and ABORT."""

    __slots__ = (
        "address", "family", "header_bytes", "headers", "headers_dropped",
        "headers_dropped_bytes", "helo", "hostname", "macros",
        "mail_args", "messages", "peer", "port", "rcpt_count", "state",
    )

    def __init__(self, peer: str = "") -> None:
        self.peer = peer
        self.macros: dict[str, str] = {}
        self.hostname: str | None = None
        self.family: str | None = None
        self.port = 0
        self.address: str | None = None
        self.helo: str | None = None
        self.messages = 0
        self.state: dict[str, object] = {}  # free for the application (per session)
        self.reset_message()

    def reset_message(self) -> None:
        self.mail_args: list[str] = []
        self.rcpt_count = 0
        self.headers: list[tuple[str, str]] = []
        self.header_bytes = 0  # of every header of the message, stored or not
        self.headers_dropped = 0  # headers not stored: beyond the server's per-message limits
        self.headers_dropped_bytes = 0

    def reset_connection(self) -> None:
        peer = self.peer
        self.__init__(peer)  # type: ignore[misc]

    @property
    def client_ip(self) -> str | None:
        if self.family in ("4", "6") and self.address:
            return self.address
        return self.macros.get("{client_addr}")

    @property
    def headers_truncated(self) -> bool:
        return self.headers_dropped > 0

    @property
    def queue_id(self) -> str | None:
        return self.macros.get("i")

    @property
    def declared_size(self) -> int | None:
        """The ``SIZE=`` ESMTP parameter of MAIL FROM, if the client sent one."""
        for arg in self.mail_args[1:]:
            if arg[:5].upper() == "SIZE=" and arg[5:].isdigit():
                return int(arg[5:])
        return None


class MilterApplication(Protocol):
    """The decision side. Each method returns one encoded reply packet and must not block."""

    def connect(self, session: Session) -> bytes: ...

    def end_of_headers(self, session: Session) -> bytes: ...

    def end_of_message(self, session: Session) -> bytes: ...


class AcceptAll:
    """An application that accepts everything at end-of-headers (tests, benchmarks)."""

    def connect(self, session: Session) -> bytes:
        return CONTINUE_PACKET

    def end_of_headers(self, session: Session) -> bytes:
        return ACCEPT_PACKET

    def end_of_message(self, session: Session) -> bytes:
        return CONTINUE_PACKET


@dataclass(slots=True)
class ServerMetrics:
    connections_opened: int = 0
    connections_closed: int = 0
    protocol_errors: int = 0
    application_errors: int = 0
    messages: int = 0
    headers_dropped: int = 0
    messages_headers_truncated: int = 0


class MilterProtocol(LimitedProtocol):
    """One MTA connection."""

    def __init__(self, server: MilterServer) -> None:
        self.server = server
        self.listener = server
        self.admitted = False
        self.app = server.app
        self.decoder = MilterDecoder(server.max_packet)
        self.session = Session()
        self.transport: asyncio.Transport | None = None
        self.no_reply = 0  # negotiated SMFIP_NR_* flags: commands we must not answer
        self.negotiated = False
        self.closing = False  # QUIT seen: close after writing the pending replies

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.admit(transport):
            return
        self.admitted = True
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.session.peer = str(peer) if peer else "unix"
        self.server.metrics.connections_opened += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.server.metrics.connections_closed += 1
            self.release()

    def peer_name(self) -> str:
        return self.session.peer

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        self.touch()
        out: list[bytes] = []
        try:
            for command, payload in self.decoder.feed(data):
                reply = self.handle(command, payload)
                if reply is not None:
                    out.append(reply)
                if self.closing:
                    break
        except MilterProtocolError as exc:
            self.server.metrics.protocol_errors += 1
            log.warning("milter connection %s closed: protocol error: %s", self.session.peer, exc)
            if out:
                transport.write(b"".join(out))
            transport.abort()
            return
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.closing:
            transport.close()

    def _ack(self, command: bytes) -> bytes | None:
        return None if self.no_reply & NO_REPLY_FLAG[command] else CONTINUE_PACKET

    def handle(self, command: bytes, payload: bytes) -> bytes | None:
        """One packet in, at most one reply packet out (None: nothing to send)."""
        s = self.session
        if command == SMFIC_MACRO:
            _, macros = parse_macros(payload)
            s.macros.update(macros)
            if len(s.macros) > MAX_MACROS:
                raise MilterProtocolError(f"more than {MAX_MACROS} distinct macros on one connection")
            return None
        if command == SMFIC_HEADER:
            self._store_header(s, *parse_header(payload))
            return self._ack(command)
        if command == SMFIC_EOH:
            self.server.metrics.messages += 1
            s.messages += 1
            return self._app_reply(self.app.end_of_headers, s)
        if command == SMFIC_RCPT:
            parse_strings(payload, "RCPT")
            s.rcpt_count += 1
            return self._ack(command)
        if command == SMFIC_MAIL:
            s.reset_message()
            s.mail_args = parse_strings(payload, "MAIL")
            return self._ack(command)
        if command == SMFIC_CONNECT:
            c = parse_connect(payload)
            s.hostname, s.family, s.port, s.address = c.hostname, c.family, c.port, c.address
            if self.no_reply & NO_REPLY_FLAG[command]:
                return None
            return self._app_reply(self.app.connect, s)
        if command == SMFIC_HELO:
            parts = parse_strings(payload, "HELO")
            s.helo = parts[0] if parts else ""
            return self._ack(command)
        if command == SMFIC_ABORT:
            s.reset_message()
            return None
        if command == SMFIC_BODYEOB:
            return self._app_reply(self.app.end_of_message, s)
        if command in (SMFIC_BODY, SMFIC_DATA, SMFIC_UNKNOWN):
            return self._ack(command)
        if command == SMFIC_OPTNEG:
            return self._negotiate(payload)
        if command == SMFIC_QUIT:
            self.closing = True
            return None
        if command == SMFIC_QUIT_NC:
            s.reset_connection()
            return None
        raise MilterProtocolError(f"unknown command {command!r}")

    def _store_header(self, s: Session, name: str, value: str) -> None:
        size = len(name) + len(value) + 4
        s.header_bytes += size
        server = self.server
        if len(s.headers) < server.max_headers and s.header_bytes <= server.max_header_bytes:
            s.headers.append((name, value))
            return
        if not s.headers_dropped:
            server.metrics.messages_headers_truncated += 1
        s.headers_dropped += 1
        s.headers_dropped_bytes += size
        server.metrics.headers_dropped += 1

    def _negotiate(self, payload: bytes) -> bytes:
        if self.negotiated:
            raise MilterProtocolError("second OPTNEG on one connection")
        offer = parse_optneg(payload)
        if offer.version < 2:
            raise MilterProtocolError(f"MTA speaks milter protocol {offer.version}, need >= 2")
        protocol = DESIRED_PROTOCOL & offer.protocol
        self.no_reply = protocol & NO_REPLY_ANY
        self.negotiated = True
        actions = DESIRED_ACTIONS & offer.actions
        version = min(MILTER_VERSION, offer.version)
        lists = MACRO_LISTS if actions & SMFIF_SETSYMLIST and version >= 6 else None
        return encode_optneg(version, actions, protocol, lists)

    def _app_reply(self, method: object, session: Session) -> bytes:
        try:
            reply = method(session)  # type: ignore[operator]
        except Exception:
            self.server.metrics.application_errors += 1
            log.exception("milter application failed for %s; accepting (fail open)", session.peer)
            return ACCEPT_PACKET
        assert isinstance(reply, bytes)
        return reply


class MilterServer(Listeners):
    """Listens on Unix sockets and/or TCP ports; ``await server.close()`` stops listening."""

    def __init__(self, app: MilterApplication, *, max_packet: int = DEFAULT_MAX_PACKET,
                 limits: ConnectionLimits | None = None, max_headers: int = DEFAULT_MAX_HEADERS,
                 max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> None:
        super().__init__(limits)
        self.app = app
        self.max_packet = max_packet
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        self.metrics = ServerMetrics()

    def protocol(self) -> MilterProtocol:
        return MilterProtocol(self)
