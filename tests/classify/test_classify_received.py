"""Received parsing: clauses, fast path vs general tokeniser, hostile input, caps, never raising."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.classify import Connection, build_bearing_hop, classify, server_key
from processors.classify.received import (
    MAX_CONTEXT_HOPS,
    MAX_HEADER_FIELDS,
    MAX_VALUE_CHARS,
    collect_received,
    parse_hop,
    parse_hop_general,
)

AT = datetime(2026, 11, 28, 12, tzinfo=UTC)
CONN = Connection("203.0.113.5", "helo.contoso.com")
STATUSES = {"current", "behind", "unsupported", "unknown_build", "not_exchange", "no_build", "cloud"}
EX = (
    "from EX01.contoso.local (10.0.0.5) by EX02.contoso.local (10.0.0.6) with Microsoft SMTP Server "
    "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.39; "
    "Tue, 2 Jul 2024 10:11:12 +0000"
)


def test_parse_exchange_hop() -> None:
    hop = parse_hop(EX)
    assert hop.from_text == "EX01.contoso.local"
    assert hop.by_host == "EX02.contoso.local"
    assert hop.is_exchange_stamp and hop.build == (15, 1, 2507, 39)
    assert hop.id_token == "15.1.2507.39"


def test_parse_variants() -> None:
    h = parse_hop("from x by y with Microsoft SMTP Server id 15.2.1748.37 via Frontend Transport; d")
    assert (h.build, h.via) == ((15, 2, 1748, 37), "Frontend Transport")
    h = parse_hop("from x ([fe80::1%12]) by x ([fe80::1%12]) with mapi id 15.01.2507.039; d")
    assert h.build == (15, 1, 2507, 39) and h.with_text == "mapi"
    h = parse_hop("from x by y with Microsoft SMTP Server (TLS) id 14.3.487.0; d")
    assert h.build == (14, 3, 487, 0)
    h = parse_hop("from mail pickup service by EX01.contoso.com with Microsoft SMTP Server id 15.1.2507.6; d")
    assert h.is_pickup and h.by_host == "EX01.contoso.com"
    h = parse_hop("from x (comment (nested (deeper)) still) by y (a\\) b) with Microsoft SMTP Server id 1.2.3.4; d")
    assert h.by_host == "y" and h.build == (1, 2, 3, 4)
    h = parse_hop("from [IPv6:2001:db8::1] by [IPv6:2001:db8::2] with Microsoft SMTP Server id 15.2.2562.53; d")
    assert h.by_host == "[IPv6:2001:db8::2]"
    h = parse_hop("FROM x BY y WITH MICROSOFT SMTP SERVER ID 15.2.2562.53 VIA Frontend Transport; d")
    assert h.build == (15, 2, 2562, 53) and h.by_host == "y"
    h = parse_hop("from x by y with Microsoft SMTP Server id 15.2.2562.53")  # no date
    assert h.build == (15, 2, 2562, 53)
    h = parse_hop("from x by y.example (Postfix) with ESMTPS id 4XyzAbc; d")
    assert not h.is_exchange_stamp and h.build is None and h.comments == ("Postfix",)
    # ';' inside a comment does not end the clauses
    h = parse_hop("from x (a; b) by y with Microsoft SMTP Server id 15.2.2562.53; d")
    assert h.by_host == "y" and h.build == (15, 2, 2562, 53)


def test_repeated_keywords_do_not_confuse() -> None:
    assert parse_hop("by by by by with with id id;").by_host is None
    h = parse_hop("from by by x with Microsoft SMTP Server id 15.2.2562.53; d")
    assert h.by_host is None  # 'by' as a from-host is a repeated keyword: nothing trustworthy
    assert parse_hop_general("from by by x with Microsoft SMTP Server id 15.2.2562.53; d") == h


# ------------------------------------------------------------------- fast path == general tokeniser

_host = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,20}", fullmatch=True) | st.sampled_from(
    ["[IPv6:2001:db8::1]", "[10.0.0.5]", "by", "from", "with", "id", "EX01.contoso.local."]
)
_comment = st.sampled_from(
    ["", " (10.0.0.5)", " (TLS)", " (version=TLS1_2, cipher=X)", " (a; b)", " ()", " (x (y))", " (a\\) b)"]
)
_build = st.sampled_from(["15.1.2507.39", "15.01.2507.039", "14.3.487.0", "1.2.3", "1234567.1.1.1", "abc"])
_with = st.sampled_from(["Microsoft SMTP Server", "mapi", "microsoft smtp server", "ESMTPS", "Microsoft SMTPSVC"])


@settings(max_examples=400, deadline=None)
@given(
    frm=st.none() | _host,
    fc=_comment,
    by=_host,
    bc=_comment,
    w=_with,
    wc=_comment,
    build=_build,
    via=st.sampled_from(["", " via Frontend Transport", " via Mailbox Transport", " via x"]),
    tail=st.sampled_from(["; Tue, 2 Jul 2024 10:11:12 +0000", ";", "", " ;x"]),
)
def test_fast_path_agrees_with_general(
    frm: str | None, fc: str, by: str, bc: str, w: str, wc: str, build: str, via: str, tail: str
) -> None:
    value = (f"from {frm}{fc} " if frm is not None else "") + f"by {by}{bc} with {w}{wc} id {build}{via}{tail}"
    fast, slow = parse_hop(value), parse_hop_general(value)
    assert (fast.by_host, fast.build, fast.is_exchange_stamp, fast.is_pickup) == (
        slow.by_host,
        slow.build,
        slow.is_exchange_stamp,
        slow.is_pickup,
    )
    assert (fast.from_text, fast.id_token, fast.via) == (slow.from_text, slow.id_token, slow.via)


# ----------------------------------------------------------------------------- hostile input

_junk = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.text(
    alphabet="()\\;[] \t\r\nbyfromwithidvia.0123456789MicrosftSMTPServer", max_size=300
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["Received", "received", "X", "", "RECEIVED ", "Subject"]), _junk), max_size=12)
)
def test_random_headers_never_raise(headers: list[tuple[str, str]]) -> None:
    r = classify(headers, CONN, AT)
    assert r.status in STATUSES and r.rule and r.reason
    assert isinstance(r.server, str) and r.server
    r.to_json_dict()


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, len(EX)),
    st.integers(0, len(EX)),
    st.text(alphabet="()\\; \t\r\n.x0", max_size=5),
)
def test_mutated_exchange_hop_never_raises(i: int, j: int, insert: str) -> None:
    i, j = min(i, j), max(i, j)
    value = EX[:i] + insert + EX[j:]
    r = classify([("Received", value)], CONN, AT)
    assert r.status in STATUSES
    r.to_json_dict()


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Received", "")],
        [("Received", ";")],
        [("Received", "(")],
        [("Received", ")")],
        [("Received", "\\")],
        [("Received", "by")],
        [("Received", "by ;")],
        [("Received", "with Microsoft SMTP Server id")],
        [("Received", "by " + "x" * 1000 + " with Microsoft SMTP Server id 15.2.2562.53;")],
        [("Received", "\x00\udcff\ufffd")],
        [(None, None)],  # type: ignore[list-item]
        [("Received",)],  # type: ignore[list-item]
        [("Received", b"by x with Microsoft SMTP Server id 15.2.2562.53;")],  # type: ignore[list-item]
        [(b"Received", "by x with Microsoft SMTP Server id 15.2.2562.53;")],  # type: ignore[list-item]
        [42],  # type: ignore[list-item]
        "not a header list",  # type: ignore[list-item]
    ],
)
def test_garbage_never_raises(headers: list[tuple[str, str]]) -> None:
    r = classify(headers, CONN, AT)
    assert r.status in STATUSES


def test_hostile_connection_values() -> None:
    r = classify([], Connection("", None), AT)
    assert (r.server, r.server_source) == ("unknown", "ip")
    r = classify([], Connection("198.51.100.4", "  "), AT)
    assert (r.server, r.server_source) == ("198.51.100.4", "ip")
    r = classify([], Connection("198.51.100.4", "Mail.Contoso.COM."), AT)
    assert (r.server, r.server_source) == ("mail.contoso.com", "helo")


# ------------------------------------------------------------------------------------------- caps


def test_only_first_received_headers_are_read() -> None:
    headers = [("Received", EX)] * 100_000
    block = collect_received(headers)
    assert block.top == EX and len(block.lower) == MAX_CONTEXT_HOPS
    t0 = time.perf_counter()
    r = classify(headers, CONN, AT)
    assert time.perf_counter() - t0 < 0.5  # reads 1 + MAX_CONTEXT_HOPS values, not 100k
    assert r.build == "15.1.2507.39" and len(r.context_hops) == MAX_CONTEXT_HOPS


def test_header_field_scan_is_capped() -> None:
    headers = [("X-Junk", "a")] * (MAX_HEADER_FIELDS * 50) + [("Received", EX)]
    r = classify(headers, CONN, AT)
    assert (r.status, r.rule) == ("no_build", "no_received")
    assert f"first {MAX_HEADER_FIELDS} header fields" in r.reason


def test_value_is_capped() -> None:
    huge = EX[:-40] + " " + "x" * 5_000_000 + EX[-40:]
    hop = parse_hop(huge)
    assert len(hop.raw) == MAX_VALUE_CHARS
    r = classify([("Received", huge)], CONN, AT)
    assert len(r.hop or "") == MAX_VALUE_CHARS
    assert build_bearing_hop([("Received", huge)]) == huge[:MAX_VALUE_CHARS]


@pytest.mark.parametrize(
    "unit",
    ["(", ")", "((((((", "by ", "by by ", "(by (", "\\(", "with Microsoft SMTP Server id ", "; ", "from ", "x" * 7],
)
def test_pathological_patterns_scale_linearly(unit: str) -> None:
    """Work grows at most linearly with input size; values beyond the cap cost nothing more."""

    def cost(n_chars: int) -> float:
        value = (unit * (n_chars // len(unit) + 1))[:n_chars]
        headers = [("Received", value)] * (MAX_CONTEXT_HOPS + 1)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(20):
                classify(headers, CONN, AT)
                parse_hop_general(value)
            best = min(best, time.perf_counter() - t0)
        return best

    small = cost(MAX_VALUE_CHARS // 10)
    big = cost(MAX_VALUE_CHARS)
    huge = cost(MAX_VALUE_CHARS * 1000)  # capped: same work as `big`
    # generous bounds: 10x input may cost up to ~10x (linear) plus noise, never 100x (quadratic)
    assert big < 40 * small + 0.05, (small, big)
    assert huge < 4 * big + 0.05, (big, huge)
    assert big < 1.0


# ---------------------------------------------------------------------------------- server naming


def test_server_key_and_names() -> None:
    r = classify([("Received", EX)], CONN, AT)
    assert r.server == "ex02.contoso.local" and r.server_source == "by"
    assert server_key("t-123", r, CONN) == "t-123/ex02.contoso.local"
    r = classify([("Received", "from x by relay.contoso.com (Postfix) with ESMTPS id 4X; d")], CONN, AT)
    assert (r.server, r.server_source) == ("helo.contoso.com", "helo")
    assert server_key("t", r, CONN) == "t/helo.contoso.com"


def test_build_bearing_hop_is_topmost_received() -> None:
    headers = [("Return-Path", "<a@b>"), ("received", EX), ("Received", "from old by older; d")]
    assert build_bearing_hop(headers) == EX
    assert build_bearing_hop([("Subject", "x")]) is None


def test_context_hops_reported_not_decisive() -> None:
    old = "from a by ex2010.contoso.local with Microsoft SMTP Server (TLS) id 14.3.513.0; d"
    cloud = "from a by AM0PR01MB1.eurprd01.prod.outlook.com with Microsoft SMTP Server id 15.20.1.1; d"
    pickup = "from mail pickup service by EX9.contoso.local with Microsoft SMTP Server id 15.1.2507.6; d"
    relay = "from a by mx.contoso.com (Postfix) with ESMTP id 4X; d"
    r = classify(
        [("Received", EX), ("Received", old), ("Received", cloud), ("Received", pickup), ("Received", relay)],
        CONN,
        AT,
    )
    assert r.build == "15.1.2507.39"
    assert [(h.by, h.build, h.kind) for h in r.context_hops] == [
        ("ex2010.contoso.local", "14.3.513.0", "exchange"),
        ("am0pr01mb1.eurprd01.prod.outlook.com", "15.20.1.1", "cloud"),
        ("ex9.contoso.local", "15.1.2507.6", "pickup"),
        ("mx.contoso.com", None, "not_exchange"),
    ]
