"""Policy delegation protocol: vectors, split reads (4096/128/16/1), limits, malformed input."""

from __future__ import annotations

import pytest

from edge.policy.codec import PolicyDecoder, PolicyProtocolError, encode_action, encode_request

# A request as Postfix 3.7 sends it (SMTPD_POLICY_README), plus an attribute we do not know.
REQUEST_1 = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
    b"client_address=192.0.2.10\nclient_name=ex01.contoso.com\nreverse_client_name=ex01.contoso.com\n"
    b"helo_name=EX01.contoso.com\nsender=alice@contoso.com\nrecipient=bob@example.net\n"
    b"recipient_count=0\nqueue_id=\ninstance=123.456.7\nsize=12345\nccert_subject=\n"
    b"some_future_attribute=x=y\n\n"
)
REQUEST_2 = b"request=smtpd_access_policy\r\nprotocol_state=DATA\r\nclient_address=2001:db8::1\r\n\r\n"
STREAM = REQUEST_1 + REQUEST_2 + REQUEST_1


def expected() -> list[dict[str, str]]:
    return list(PolicyDecoder().feed(STREAM))


def test_vector_fields() -> None:
    first, second, third = expected()
    assert first["client_address"] == "192.0.2.10"
    assert first["helo_name"] == "EX01.contoso.com"
    assert first["queue_id"] == ""
    assert first["some_future_attribute"] == "x=y"  # only the first '=' splits
    assert second == {"request": "smtpd_access_policy", "protocol_state": "DATA",
                      "client_address": "2001:db8::1"}
    assert third == first


@pytest.mark.parametrize("chunk", [4096, 128, 16, 1])
def test_split_reads(chunk: int) -> None:
    dec = PolicyDecoder()
    got: list[dict[str, str]] = []
    for i in range(0, len(STREAM), chunk):
        got.extend(dec.feed(STREAM[i:i + chunk]))
    assert got == expected()
    assert not dec.in_request


def test_encode_roundtrip() -> None:
    attrs = {"request": "smtpd_access_policy", "client_address": "192.0.2.1", "helo_name": "a.b"}
    assert PolicyDecoder().feed(encode_request(attrs)) == [attrs]
    assert encode_action("450 4.7.230 throttled") == b"action=450 4.7.230 throttled\n\n"
    with pytest.raises(ValueError):
        encode_action("DUNNO\naction=OK")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"no equals sign\n\n", "not a name=value line"),
        (b"=value\n\n", "not a name=value line"),
        (b"a=" + b"x" * 9000, "line exceeds"),
        (b"a=" + b"x" * 9000 + b"\n", "line exceeds"),
        (b"".join(b"k%d=%s\n" % (i, b"v" * 200) for i in range(200)), "request exceeds"),
        (b"".join(b"k%d=v\n" % i for i in range(201)), "more than 200 attributes"),
    ],
)
@pytest.mark.parametrize("chunk", [4096, 1])
def test_malformed(data: bytes, message: str, chunk: int) -> None:
    dec = PolicyDecoder()
    with pytest.raises(PolicyProtocolError, match=message):
        for i in range(0, len(data), chunk):
            dec.feed(data[i:i + chunk])


def test_binary_and_invalid_utf8_do_not_crash() -> None:
    [req] = PolicyDecoder().feed(b"helo_name=\xff\xfe\x00x\nclient_address=192.0.2.1\n\n")
    assert req["client_address"] == "192.0.2.1"
    assert "\ufffd" in req["helo_name"]


def test_finish_returns_request_ended_by_eof() -> None:
    dec = PolicyDecoder()
    assert dec.feed(b"client_address=192.0.2.1\nhelo_name=a.b") == []
    assert dec.finish() == {"client_address": "192.0.2.1", "helo_name": "a.b"}
    assert dec.finish() is None
