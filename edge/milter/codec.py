"""Sendmail milter protocol (version 6, as spoken by Postfix ``smtpd_milters``): framing and payloads.

Every packet is ``uint32 length`` (big-endian, counting the command byte) + 1 command byte + payload.
:class:`MilterDecoder` is incremental: feed it whatever a read returned (one byte or many packets)
and it yields the complete packets, keeping the rest. A length of zero or above ``max_packet`` raises
:class:`MilterProtocolError`; the caller closes the connection (a peer that sends garbage cannot be
resynchronised). The ``parse_*`` helpers turn payloads into values and raise the same error for
malformed payloads. The ``encode_*`` helpers build replies.

References: the libmilter ``mfdef.h`` constants (sendmail 8.14+), Postfix ``src/milter/milter8.c``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Final

from processors.errors import PatchgateError

# --- commands, MTA -> milter -------------------------------------------------------------------
SMFIC_ABORT: Final = b"A"
SMFIC_BODY: Final = b"B"
SMFIC_CONNECT: Final = b"C"
SMFIC_MACRO: Final = b"D"
SMFIC_BODYEOB: Final = b"E"
SMFIC_HELO: Final = b"H"
SMFIC_QUIT_NC: Final = b"K"
SMFIC_HEADER: Final = b"L"
SMFIC_MAIL: Final = b"M"
SMFIC_EOH: Final = b"N"
SMFIC_OPTNEG: Final = b"O"
SMFIC_QUIT: Final = b"Q"
SMFIC_RCPT: Final = b"R"
SMFIC_DATA: Final = b"T"
SMFIC_UNKNOWN: Final = b"U"

# --- replies, milter -> MTA --------------------------------------------------------------------
SMFIR_ADDRCPT: Final = b"+"
SMFIR_DELRCPT: Final = b"-"
SMFIR_ACCEPT: Final = b"a"
SMFIR_REPLBODY: Final = b"b"
SMFIR_CONTINUE: Final = b"c"
SMFIR_DISCARD: Final = b"d"
SMFIR_ADDHEADER: Final = b"h"
SMFIR_CHGHEADER: Final = b"m"
SMFIR_PROGRESS: Final = b"p"
SMFIR_QUARANTINE: Final = b"q"
SMFIR_REJECT: Final = b"r"
SMFIR_SKIP: Final = b"s"
SMFIR_TEMPFAIL: Final = b"t"
SMFIR_REPLYCODE: Final = b"y"
SMFIR_OPTNEG: Final = b"O"

# --- protocol flags (SMFIP_*): what the MTA may leave out / need not wait for ------------------
SMFIP_NOCONNECT: Final = 0x01
SMFIP_NOHELO: Final = 0x02
SMFIP_NOMAIL: Final = 0x04
SMFIP_NORCPT: Final = 0x08
SMFIP_NOBODY: Final = 0x10
SMFIP_NOHDRS: Final = 0x20
SMFIP_NOEOH: Final = 0x40
SMFIP_NR_HDR: Final = 0x80
SMFIP_NOUNKNOWN: Final = 0x100
SMFIP_NODATA: Final = 0x200
SMFIP_SKIP: Final = 0x400
SMFIP_RCPT_REJ: Final = 0x800
SMFIP_NR_CONN: Final = 0x1000
SMFIP_NR_HELO: Final = 0x2000
SMFIP_NR_MAIL: Final = 0x4000
SMFIP_NR_RCPT: Final = 0x8000
SMFIP_NR_DATA: Final = 0x10000
SMFIP_NR_UNKN: Final = 0x20000
SMFIP_NR_EOH: Final = 0x40000
SMFIP_NR_BODY: Final = 0x80000
SMFIP_HDR_LEADSPC: Final = 0x100000

# --- actions (SMFIF_*): what the milter may do to a message ------------------------------------
SMFIF_ADDHDRS: Final = 0x01
SMFIF_CHGBODY: Final = 0x02
SMFIF_ADDRCPT: Final = 0x04
SMFIF_DELRCPT: Final = 0x08
SMFIF_CHGHDRS: Final = 0x10
SMFIF_QUARANTINE: Final = 0x20
SMFIF_CHGFROM: Final = 0x40
SMFIF_ADDRCPT_PAR: Final = 0x80
SMFIF_SETSYMLIST: Final = 0x100

# --- macro stages (SMFIM_*): where a milter may ask for its own macro list (protocol 6) ----------
SMFIM_CONNECT: Final = 0
SMFIM_HELO: Final = 1
SMFIM_ENVFROM: Final = 2
SMFIM_ENVRCPT: Final = 3
SMFIM_DATA: Final = 4
SMFIM_EOM: Final = 5
SMFIM_EOH: Final = 6

# Which "no reply" flag covers which command (when negotiated, the MTA does not wait for a reply).
NO_REPLY_FLAG: Final[dict[bytes, int]] = {
    SMFIC_CONNECT: SMFIP_NR_CONN,
    SMFIC_HELO: SMFIP_NR_HELO,
    SMFIC_MAIL: SMFIP_NR_MAIL,
    SMFIC_RCPT: SMFIP_NR_RCPT,
    SMFIC_DATA: SMFIP_NR_DATA,
    SMFIC_UNKNOWN: SMFIP_NR_UNKN,
    SMFIC_HEADER: SMFIP_NR_HDR,
    SMFIC_EOH: SMFIP_NR_EOH,
    SMFIC_BODY: SMFIP_NR_BODY,
}
NO_REPLY_ANY: Final = reduce(or_, NO_REPLY_FLAG.values())  # every SMFIP_NR_* flag
# Commands that never get a reply.
NEVER_REPLIED: Final = frozenset({SMFIC_MACRO, SMFIC_ABORT, SMFIC_QUIT, SMFIC_QUIT_NC})

MILTER_VERSION: Final = 6
DEFAULT_MAX_PACKET: Final = 1 << 20  # Postfix sends body chunks <= 64 KiB, headers <= 100 KiB

_LEN = struct.Struct(">I")
_OPTNEG = struct.Struct(">III")


class MilterProtocolError(PatchgateError):
    """The peer broke the protocol; the connection must be closed."""


class MilterDecoder:
    """Incremental packet splitter: ``for cmd, payload in decoder.feed(data): ...``."""

    __slots__ = ("_buf", "max_packet")

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self._buf = bytearray()
        self.max_packet = max_packet

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Add ``data``; return every complete ``(command, payload)`` now available, in order."""
        buf = self._buf
        buf += data
        out: list[tuple[bytes, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (length,) = _LEN.unpack_from(buf, pos)
            if length == 0:
                raise MilterProtocolError("packet of length 0 (no command byte)")
            if length > self.max_packet:
                raise MilterProtocolError(f"packet of {length} bytes exceeds the limit of {self.max_packet}")
            if end - pos - 4 < length:
                break
            start = pos + 4
            out.append((bytes(buf[start:start + 1]), bytes(buf[start + 1:start + length])))
            pos = start + length
        if pos:
            del buf[:pos]
        return out


def iter_packets(data: bytes, max_packet: int = DEFAULT_MAX_PACKET) -> Iterator[tuple[bytes, bytes]]:
    """All packets in a complete byte string (tests and drivers)."""
    dec = MilterDecoder(max_packet)
    yield from dec.feed(data)
    if dec.buffered:
        raise MilterProtocolError(f"{dec.buffered} trailing bytes do not form a packet")


# --- encoding ----------------------------------------------------------------------------------

def encode_packet(command: bytes, payload: bytes = b"") -> bytes:
    if len(command) != 1:
        raise ValueError("a milter command is exactly one byte")
    return _LEN.pack(len(payload) + 1) + command + payload


def encode_optneg(version: int, actions: int, protocol: int,
                  macro_lists: Mapping[int, str] | None = None) -> bytes:
    """OPTNEG; ``macro_lists`` (stage -> space-separated macro names) replaces the MTA's lists.

    The MTA then sends exactly these macros, and none at stages not listed (Postfix: milter8.c
    "override lists of macro names"); it needs ``SMFIF_SETSYMLIST`` in ``actions``.
    """
    tail = b"".join(_LEN.pack(stage) + names.encode("ascii") + b"\0"
                    for stage, names in (macro_lists or {}).items())
    return encode_packet(SMFIC_OPTNEG, _OPTNEG.pack(version, actions, protocol) + tail)


def escape_reply(text: str) -> str:
    """libmilter's smfi_setreply rules: ``%`` must be doubled, no CR/LF/NUL in a line."""
    return text.replace("%", "%%")


def encode_replycode(reply: str) -> bytes:
    """``SMFIR_REPLYCODE`` for a full reply line like ``450 4.7.230 text``, escaped, NUL-terminated."""
    if any(ch in reply for ch in "\r\n\0"):
        raise ValueError("a milter reply line must not contain CR, LF or NUL")
    if len(reply) < 4 or reply[0] not in "45" or not reply[:3].isdigit() or reply[3] != " ":
        raise ValueError(f"not a 4xx/5xx SMTP reply: {reply[:40]!r}")
    return encode_packet(SMFIR_REPLYCODE, escape_reply(reply).encode("utf-8") + b"\0")


CONTINUE_PACKET: Final = encode_packet(SMFIR_CONTINUE)
ACCEPT_PACKET: Final = encode_packet(SMFIR_ACCEPT)
TEMPFAIL_PACKET: Final = encode_packet(SMFIR_TEMPFAIL)
REJECT_PACKET: Final = encode_packet(SMFIR_REJECT)


def encode_connect(hostname: str, family: str, port: int, address: str) -> bytes:
    """SMFIC_CONNECT as an MTA sends it (drivers and tests). family: '4', '6', 'L' or 'U'."""
    payload = hostname.encode() + b"\0" + family.encode()
    if family != "U":
        payload += struct.pack(">H", port) + address.encode() + b"\0"
    return encode_packet(SMFIC_CONNECT, payload)


def encode_macro(stage: bytes, macros: dict[str, str]) -> bytes:
    payload = stage + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in macros.items())
    return encode_packet(SMFIC_MACRO, payload)


def encode_strings(command: bytes, *values: str) -> bytes:
    """A command whose payload is NUL-terminated strings (HELO, MAIL, RCPT, HEADER, UNKNOWN)."""
    return encode_packet(command, b"".join(v.encode("utf-8", "surrogateescape") + b"\0" for v in values))


# --- decoding payloads -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OptNeg:
    version: int
    actions: int
    protocol: int
    macro_lists: tuple[tuple[int, str], ...] = ()  # a milter's reply may ask for its own macros


@dataclass(frozen=True, slots=True)
class Connect:
    hostname: str
    family: str  # '4', '6', 'L' (unix), 'U' (unknown)
    port: int
    address: str


def _text(raw: bytes) -> str:
    # Header and envelope bytes may be 8-bit; keep them losslessly.
    return raw.decode("utf-8", "surrogateescape")


def parse_optneg(payload: bytes) -> OptNeg:
    if len(payload) < 12:
        raise MilterProtocolError(f"OPTNEG payload of {len(payload)} bytes, need 12")
    version, actions, protocol = _OPTNEG.unpack_from(payload)
    lists: list[tuple[int, str]] = []
    rest = payload[12:]
    while rest:
        if len(rest) < 5 or b"\0" not in rest[4:]:
            raise MilterProtocolError("OPTNEG macro list truncated")
        (stage,) = _LEN.unpack_from(rest)
        names, _, rest = rest[4:].partition(b"\0")
        lists.append((stage, _text(names)))
    return OptNeg(version, actions, protocol, tuple(lists))


def parse_strings(payload: bytes, what: str) -> list[str]:
    """Split NUL-terminated strings; the payload must end with NUL."""
    if not payload.endswith(b"\0"):
        raise MilterProtocolError(f"{what} payload not NUL-terminated")
    return [_text(p) for p in payload[:-1].split(b"\0")]


def parse_connect(payload: bytes) -> Connect:
    nul = payload.find(b"\0")
    if nul < 0 or len(payload) < nul + 2:
        raise MilterProtocolError("CONNECT payload truncated")
    hostname = _text(payload[:nul])
    family = chr(payload[nul + 1])
    if family == "U":
        return Connect(hostname, family, 0, "")
    if family not in "46L":
        raise MilterProtocolError(f"CONNECT with unknown family {family!r}")
    rest = payload[nul + 2:]
    if len(rest) < 3 or not rest.endswith(b"\0"):
        raise MilterProtocolError("CONNECT address truncated")
    (port,) = struct.unpack_from(">H", rest)
    return Connect(hostname, family, port, _text(rest[2:-1]))


def parse_header(payload: bytes) -> tuple[str, str]:
    parts = parse_strings(payload, "HEADER")
    if len(parts) != 2:
        raise MilterProtocolError(f"HEADER payload has {len(parts)} strings, need name and value")
    return parts[0], parts[1]


def parse_macros(payload: bytes) -> tuple[bytes, dict[str, str]]:
    """``(stage command byte, {name: value})``; an empty macro list is fine."""
    if not payload:
        raise MilterProtocolError("MACRO payload empty (no stage byte)")
    stage = payload[:1]
    body = payload[1:]
    if not body:
        return stage, {}
    parts = parse_strings(body, "MACRO")
    if len(parts) % 2:
        raise MilterProtocolError("MACRO payload has a name without a value")
    return stage, {parts[i]: parts[i + 1] for i in range(0, len(parts), 2)}
