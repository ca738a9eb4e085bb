"""Milter framing and payloads: byte vectors, split reads (4096/128/16/1), malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.milter.codec import (
    SMFIC_CONNECT,
    SMFIC_EOH,
    SMFIC_HEADER,
    SMFIC_MACRO,
    SMFIC_OPTNEG,
    SMFIR_REPLYCODE,
    MilterDecoder,
    MilterProtocolError,
    encode_connect,
    encode_macro,
    encode_optneg,
    encode_packet,
    encode_replycode,
    encode_strings,
    iter_packets,
    parse_connect,
    parse_header,
    parse_macros,
    parse_optneg,
    parse_strings,
)

# Hand-written wire bytes, independent of our encoder.
OPTNEG_FROM_POSTFIX = b"\x00\x00\x00\x0dO" + b"\x00\x00\x00\x06" + b"\x00\x00\x01\xff" + b"\x00\x1f\xff\xff"
CONNECT_V4 = (b"\x00\x00\x00\x20C" + b"ex01.contoso.com\x00" + b"4" + b"\xa1\x12" + b"192.0.2.10\x00")
CONNECT_V6 = b"\x00\x00\x00\x1bC" + b"mx.example\x00" + b"6" + b"\x00\x19" + b"2001:db8::1\x00"
CONNECT_UNKNOWN = b"\x00\x00\x00\x0cC" + b"localhost\x00" + b"U"
MACRO_EOH = b"\x00\x00\x00\x09D" + b"N" + b"i\x00" + b"4XyZ\x00"
HEADER = b"\x00\x00\x00\x15L" + b"Subject\x00" + b"hello world\x00"
EOH = b"\x00\x00\x00\x01N"
REPLY_450 = b"\x00\x00\x00\x18y" + b"450 4.7.230 100%% sure\x00"

STREAM = OPTNEG_FROM_POSTFIX + CONNECT_V4 + CONNECT_V6 + CONNECT_UNKNOWN + MACRO_EOH + HEADER + EOH


def test_vectors_match_encoder() -> None:
    assert encode_optneg(6, 0x1FF, 0x1FFFFF) == OPTNEG_FROM_POSTFIX
    # a milter's reply may append (stage, "names\0") pairs: they replace the MTA's macro lists
    with_lists = encode_optneg(6, 0x100, 0x40, {0: "j", 6: "i {auth_type}"})
    assert with_lists == (b"\x00\x00\x00\x25O" + b"\x00\x00\x00\x06\x00\x00\x01\x00\x00\x00\x00\x40"
                          + b"\x00\x00\x00\x00j\x00" + b"\x00\x00\x00\x06i {auth_type}\x00")
    assert parse_optneg(with_lists[5:]).macro_lists == ((0, "j"), (6, "i {auth_type}"))
    assert encode_connect("ex01.contoso.com", "4", 41234, "192.0.2.10") == CONNECT_V4
    assert encode_connect("mx.example", "6", 25, "2001:db8::1") == CONNECT_V6
    assert encode_connect("localhost", "U", 0, "") == CONNECT_UNKNOWN
    assert encode_macro(SMFIC_EOH, {"i": "4XyZ"}) == MACRO_EOH
    assert encode_strings(SMFIC_HEADER, "Subject", "hello world") == HEADER
    assert encode_packet(SMFIC_EOH) == EOH
    assert encode_replycode("450 4.7.230 100% sure") == REPLY_450


def test_decode_stream_whole() -> None:
    packets = list(iter_packets(STREAM))
    assert [cmd for cmd, _ in packets] == [SMFIC_OPTNEG, SMFIC_CONNECT, SMFIC_CONNECT, SMFIC_CONNECT,
                                           SMFIC_MACRO, SMFIC_HEADER, SMFIC_EOH]
    optneg = parse_optneg(packets[0][1])
    assert (optneg.version, optneg.actions, optneg.protocol) == (6, 0x1FF, 0x1FFFFF)
    c4 = parse_connect(packets[1][1])
    assert (c4.hostname, c4.family, c4.port, c4.address) == ("ex01.contoso.com", "4", 41234, "192.0.2.10")
    c6 = parse_connect(packets[2][1])
    assert (c6.family, c6.port, c6.address) == ("6", 25, "2001:db8::1")
    cu = parse_connect(packets[3][1])
    assert (cu.hostname, cu.family, cu.port, cu.address) == ("localhost", "U", 0, "")
    assert parse_macros(packets[4][1]) == (SMFIC_EOH, {"i": "4XyZ"})
    assert parse_header(packets[5][1]) == ("Subject", "hello world")
    assert packets[6] == (SMFIC_EOH, b"")


@pytest.mark.parametrize("chunk", [4096, 128, 16, 1])
def test_split_reads(chunk: int) -> None:
    dec = MilterDecoder()
    got: list[tuple[bytes, bytes]] = []
    for i in range(0, len(STREAM), chunk):
        got.extend(dec.feed(STREAM[i:i + chunk]))
    assert got == list(iter_packets(STREAM))
    assert dec.buffered == 0


@given(st.lists(st.integers(1, 40), min_size=1, max_size=60))
def test_arbitrary_split_points(sizes: list[int]) -> None:
    dec = MilterDecoder()
    got: list[tuple[bytes, bytes]] = []
    pos = 0
    stream = STREAM * 3
    for size in sizes * 20:
        if pos >= len(stream):
            break
        got.extend(dec.feed(stream[pos:pos + size]))
        pos += size
    got.extend(dec.feed(stream[pos:]))
    assert got == list(iter_packets(stream))


def test_body_packet_with_nul_bytes_is_opaque() -> None:
    body = bytes(range(256)) * 10
    assert list(iter_packets(encode_packet(b"B", body))) == [(b"B", body)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x00\x00", "length 0"),
        (struct.pack(">I", (1 << 20) + 1) + b"L", "exceeds the limit"),
        (b"\xff\xff\xff\xffO", "exceeds the limit"),
    ],
)
def test_bad_framing_raises(data: bytes, message: str) -> None:
    with pytest.raises(MilterProtocolError, match=message):
        MilterDecoder().feed(data)


def test_limit_is_configurable_and_checked_before_payload_arrives() -> None:
    dec = MilterDecoder(max_packet=100)
    with pytest.raises(MilterProtocolError):
        dec.feed(struct.pack(">I", 101))  # only the length has arrived


def test_trailing_partial_packet() -> None:
    with pytest.raises(MilterProtocolError, match="trailing"):
        list(iter_packets(EOH + b"\x00\x00\x00\x05L"))


@pytest.mark.parametrize(
    ("parser", "payload", "message"),
    [
        (parse_connect, b"host", "truncated"),
        (parse_connect, b"host\x00", "truncated"),
        (parse_connect, b"host\x004\x00", "address truncated"),
        (parse_connect, b"host\x004\x00\x19192.0.2.1", "address truncated"),
        (parse_connect, b"host\x00X\x00\x19a\x00", "unknown family"),
        (parse_header, b"Subject\x00no terminator", "not NUL-terminated"),
        (parse_header, b"Subject\x00", "need name and value"),
        (parse_header, b"a\x00b\x00c\x00", "need name and value"),
        (parse_optneg, b"\x00\x00\x00\x06", "need 12"),
        (parse_optneg, b"\x00" * 12 + b"\x00\x00\x00\x06i", "macro list truncated"),
        (parse_optneg, b"\x00" * 12 + b"\x00\x00", "macro list truncated"),
        (parse_macros, b"", "no stage byte"),
        (parse_macros, b"Ci\x00", "name without a value"),
    ],
)
def test_malformed_payloads(parser, payload: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MilterProtocolError, match=message):
        parser(payload)


def test_empty_macro_list_and_8bit_values() -> None:
    assert parse_macros(b"C") == (b"C", {})
    assert parse_strings(b"\xe4\x00", "MAIL") == ["\udce4"]  # kept losslessly


def test_replycode_rules() -> None:
    packet = encode_replycode("550 5.7.230 blocked for 60 mins/hr.")
    assert packet[4:5] == SMFIR_REPLYCODE and packet.endswith(b"\x00")
    for bad in ("250 ok", "450", "450 4.7.230 a\nb", "abc def"):
        with pytest.raises(ValueError):
            encode_replycode(bad)
