"""The MTA side of the milter protocol, for tests and benchmarks: speaks like Postfix's milter8 client.

It sends the macros Postfix sends before each stage, then the command, and reads a reply only when
the negotiated protocol says the milter will send one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Sequence

from edge.milter.codec import (
    NEVER_REPLIED,
    NO_REPLY_FLAG,
    SMFIC_ABORT,
    SMFIC_CONNECT,
    SMFIC_EOH,
    SMFIC_HEADER,
    SMFIC_HELO,
    SMFIC_MAIL,
    SMFIC_OPTNEG,
    SMFIC_QUIT,
    SMFIC_RCPT,
    MilterProtocolError,
    OptNeg,
    encode_connect,
    encode_macro,
    encode_optneg,
    encode_packet,
    encode_strings,
    parse_optneg,
)

#: What Postfix 3.x offers: protocol version 6, every action, every protocol flag it knows.
POSTFIX_ACTIONS = 0x1FF
POSTFIX_PROTOCOL = 0x1FFFFF


class MilterDriver:
    """One MTA-side connection. Use ``await MilterDriver.unix(path)`` or ``.tcp(host, port)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = 0

    @classmethod
    async def unix(cls, path: str) -> MilterDriver:
        reader, writer = await asyncio.open_unix_connection(path)
        return cls(reader, writer)

    @classmethod
    async def tcp(cls, host: str, port: int) -> MilterDriver:
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def read_packet(self) -> tuple[bytes, bytes]:
        head = await self.reader.readexactly(4)
        (length,) = struct.unpack(">I", head)
        if length == 0:
            raise MilterProtocolError("reply packet of length 0")
        body = await self.reader.readexactly(length)
        return body[:1], body[1:]

    async def negotiate(self, actions: int = POSTFIX_ACTIONS, protocol: int = POSTFIX_PROTOCOL) -> OptNeg:
        self.writer.write(encode_optneg(6, actions, protocol))
        cmd, payload = await self.read_packet()
        if cmd != SMFIC_OPTNEG:
            raise MilterProtocolError(f"expected OPTNEG reply, got {cmd!r}")
        reply = parse_optneg(payload)
        self.protocol = reply.protocol
        return reply

    def expects_reply(self, command: bytes) -> bool:
        if command in NEVER_REPLIED:
            return False
        flag = NO_REPLY_FLAG.get(command)
        return not (flag and self.protocol & flag)

    async def send(self, command: bytes, packet: bytes) -> tuple[bytes, bytes] | None:
        """Write one packet; return the reply if the milter owes one."""
        self.writer.write(packet)
        if not self.expects_reply(command):
            return None
        await self.writer.drain()
        return await self.read_packet()

    async def message(self, *, ip: str = "192.0.2.10", helo: str = "ex01.contoso.com",
                      hostname: str = "ex01.contoso.com", mail_from: str = "<a@contoso.com>",
                      rcpts: Sequence[str] = ("<b@example.net>",),
                      headers: Sequence[tuple[str, str]] = (), queue_id: str = "4XyZ1",
                      connect: bool = True, macros: dict[str, str] | None = None) -> tuple[bytes, bytes]:
        """One SMTP transaction up to end-of-headers; returns the milter's reply to EOH.

        Intermediate replies that are not CONTINUE (a milter rejecting early) are returned at once.
        """
        steps: list[tuple[bytes, bytes]] = []
        if connect:
            family = "6" if ":" in ip else "4"
            steps.append((SMFIC_CONNECT, encode_macro(SMFIC_CONNECT, {"j": "edge.example", "_": hostname})
                          + encode_connect(hostname, family, 41234, ip)))
            steps.append((SMFIC_HELO, encode_macro(SMFIC_HELO, macros or {}) + encode_strings(SMFIC_HELO, helo)))
        steps.append((SMFIC_MAIL, encode_macro(SMFIC_MAIL, {"{mail_addr}": mail_from})
                      + encode_strings(SMFIC_MAIL, mail_from)))
        for r in rcpts:
            steps.append((SMFIC_RCPT, encode_macro(SMFIC_RCPT, {"{rcpt_addr}": r}) + encode_strings(SMFIC_RCPT, r)))
        for name, value in headers:
            steps.append((SMFIC_HEADER, encode_strings(SMFIC_HEADER, name, value)))
        steps.append((SMFIC_EOH, encode_macro(SMFIC_EOH, {"i": queue_id}) + encode_packet(SMFIC_EOH)))
        # Pipeline everything the milter will not answer; wait only where it owes a reply.
        for command, packet in steps:
            reply = await self.send(command, packet)
            if reply is None:
                continue
            if command == SMFIC_EOH or reply[0] != b"c":
                return reply
        raise AssertionError("EOH was not answered")  # pragma: no cover

    async def abort(self) -> None:
        self.writer.write(encode_packet(SMFIC_ABORT))

    async def quit(self) -> None:
        self.writer.write(encode_packet(SMFIC_QUIT))
        await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
