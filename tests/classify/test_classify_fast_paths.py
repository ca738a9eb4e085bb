"""The classifier's fast paths give exactly what the general code gives, and its hop cache is bounded,
counted and invisible in the results (cached == uncached, field for field)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.classify import Classification, Connection, classify, default_catalog, default_policy
from processors.classify.classifier import _build_classification, _DraftClassification, hop_cache_for
from processors.classify.hop_cache import HopCache
from processors.classify.received import (
    MAX_CONTEXT_HOPS,
    MAX_VALUE_CHARS,
    RECEIVED_SPELLINGS,
    _collect_careful,
    _split_nested_comments,
    _split_plain_comments,
    _split_quoted_comments,
    exchange_stamp,
    parse_hop_general,
    scan_received,
)
from processors.classify.stamps import _TRIGGERS, _may_stamp

AT = datetime(2026, 11, 28, 12, tzinfo=UTC)
CONN = Connection("203.0.113.5", "helo.contoso.com")
OTHER_CONN = Connection("198.51.100.9", "other.fabrikam.com")

# ------------------------------------------------------------------------------------ header scan


def test_received_spellings_are_exactly_the_case_insensitive_name() -> None:
    assert len(RECEIVED_SPELLINGS) == 256
    assert all(len(name) == 8 and name.lower() == "received" for name in RECEIVED_SPELLINGS)
    assert {"Received", "RECEIVED", "received", "rEcEiVeD"} <= RECEIVED_SPELLINGS
    assert not {"Received ", "Receive", "X-Received", "Recei\u0307ved"} & RECEIVED_SPELLINGS


_name = st.sampled_from(["Received", "received", "RECEIVED", "ReCeived", "Subject", "X-Received", "", "Received "])
_value = st.text(max_size=30) | st.just("x" * (MAX_VALUE_CHARS + 5))
_item = st.tuples(_name, _value) | st.tuples(_name, st.integers()) | st.tuples(st.integers(), _value)


@settings(max_examples=400, deadline=None)
@given(st.lists(_item, max_size=16))
def test_scan_equals_the_careful_reading(headers: list[tuple[str, str]]) -> None:
    top, lower, _scanned = scan_received(headers)
    careful = _collect_careful(headers)
    assert (top, lower) == (careful.top, careful.lower)
    assert len(lower) <= MAX_CONTEXT_HOPS and all(len(v) <= MAX_VALUE_CHARS for v in lower)


def test_malformed_items_are_skipped_not_fatal() -> None:
    headers = [("Subject", "x"), ("Received", "a", "extra"), ["Received", "b"], ("Received", "c"), ("Received", 5)]
    top, lower, _ = scan_received(headers)  # type: ignore[arg-type]
    assert (top, lower) == ("b", ("c",))


# ------------------------------------------------------------------------------------ comments


_comment_text = st.text(alphabet="() ab;", max_size=80)


@settings(max_examples=1000, deadline=None)
@given(_comment_text)
def test_comment_splits_agree(text: str) -> None:
    expected = _split_quoted_comments(text)
    assert _split_plain_comments(text) == expected
    assert _split_nested_comments(text) == expected


def test_comment_split_examples() -> None:
    for text in ["x (a (b) c) (d) y", "(()) x", "a ) (b", "(a", "a (b) " * 20, "((a) (b)) c"]:
        assert _split_plain_comments(text) == _split_quoted_comments(text), text
    assert _split_plain_comments("from x (a (b) c) by y (Postfix)") == ("from x   by y  ", ("a (b) c", "Postfix"))


# ------------------------------------------------------------------------------ exchange stamps


def test_exchange_stamp_reads_the_usual_stamps_in_any_case() -> None:
    exact = "from EX1.x.local (10.0.0.1) by EX2.x.local (10.0.0.2) with Microsoft SMTP Server (TLS) id 15.1.2507.39; d"
    assert exchange_stamp(exact) == ("EX1.x.local", "EX2.x.local", "Microsoft SMTP Server", "15.1.2507.39", None,
                                     (15, 1, 2507, 39))
    upper = "FROM a BY b WITH MICROSOFT SMTP SERVER ID 15.01.2507.039 VIA Frontend TRANSPORT; d"
    assert exchange_stamp(upper) == ("a", "b", "MICROSOFT SMTP SERVER", "15.01.2507.039", "Frontend TRANSPORT",
                                     (15, 1, 2507, 39))


def test_exchange_stamp_leaves_keyword_hosts_to_the_tokeniser() -> None:
    for value in ("from by by x with mapi id 1.2.3.4; d", "from x by With with mapi id 1.2.3.4; d",
                  "from FOR by x with mapi id 1.2.3.4; d", "by id with mapi id 1.2.3.4; d"):
        assert exchange_stamp(value) is None, value
    assert exchange_stamp("from byx by idx with mapi id 1.2.3.4; d") is not None


_word = st.sampled_from(["from", "by", "with", "id", "via", "for", "From", "BY", "x", "ex01.contoso.local", "byte",
                         "mapi", "Microsoft", "SMTP", "Server", "(c)", "(a;b)", "Transport", "Frontend", ";",
                         "15.2.1544.4", "1.2.3", "\\", "(", ")"])


@settings(max_examples=1500, deadline=None)
@given(st.lists(_word, max_size=16))
def test_exchange_stamp_agrees_with_the_tokeniser(words: list[str]) -> None:
    value = " ".join(words)
    fields = exchange_stamp(value)
    if fields is None:
        return
    hop = parse_hop_general(value)
    assert hop.is_exchange_stamp and not hop.is_pickup
    assert fields == (hop.from_text, hop.by_host, hop.with_text, hop.id_token, hop.via, hop.build)


# ------------------------------------------------------------------------------ product triggers


def test_product_trigger_check_names_every_trigger() -> None:
    for word in _TRIGGERS:
        assert _may_stamp(f"from x by y ({word.upper()} 1.2) with esmtp; d")
    assert _may_stamp("by y (8.15.2/8.15.2) with ESMTP; d")
    assert not _may_stamp("from x by y (Postfix) with ESMTPS id 4X; d")


# ---------------------------------------------------------------------------------------- hop cache


def test_hop_cache_is_bounded_and_counts() -> None:
    cache: HopCache[str] = HopCache(size=2)
    day = date(2026, 11, 28)
    assert cache.get(("a", day)) is None
    cache.put(("a", day), "A")
    cache.put(("b", day), "B")
    assert cache.get(("a", day)) == "A"
    cache.put(("b", day), "B2")  # known key: replaced, nothing evicted
    assert len(cache) == 2 and cache.get(("b", day)) == "B2"
    cache.put(("c", day), "C")  # full: emptied first
    assert len(cache) == 1 and cache.get(("a", day)) is None and cache.get(("c", day)) == "C"
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.stored, stats.evictions, stats.entries, stats.size) == (3, 2, 4, 2, 1, 2)
    assert stats.hit_rate == 0.6
    assert HopCache[str](size=0).size == 1 and HopCache[str]().stats().hit_rate is None


def _stamp(host: str, build: str, date_text: str) -> str:
    return (f"from EX01.contoso.local (10.0.0.5) by {host} (10.0.0.6) with Microsoft SMTP Server "
            f"(version=TLS1_2) id {build}; {date_text}")


def test_a_hit_is_the_uncached_result_for_this_message() -> None:
    stats = hop_cache_for().stats()
    first = [("Received", _stamp("ex02.contoso.com", "15.2.1544.4", "Sat, 28 Nov 2026 08:00:00 +0000"))]
    second = [("Received", _stamp("ex02.contoso.com", "15.2.1544.4", "Sat, 28 Nov 2026 09:41:17 +0000")),
              ("Received", "from a by b with mapi id 15.2.1544.4; Sat, 28 Nov 2026 09:41:16 +0000")]
    classify(first, CONN, AT)
    hit = classify(second, OTHER_CONN, AT)
    after = hop_cache_for().stats()
    assert after.hits == stats.hits + 1
    assert hit == classify(second, OTHER_CONN, AT, cached=False)
    assert hit.hop == second[0][1] and hit.context_raw == (second[1][1],)


def test_connection_named_servers_and_other_products_are_not_cached() -> None:
    cache = hop_cache_for()
    hidden = [("Received", "from x by y with Microsoft SMTP Server; Sat, 28 Nov 2026 08:00:00 +0000")]
    exim = [("Received", "from x by mx.fabrikam.com with esmtps (Exim 4.96) id 1t; Sat, 28 Nov 2026 08:00:00 +0000")]
    for headers in (hidden, exim):
        stored = cache.stats().stored
        classify(headers, CONN, AT)
        assert cache.stats().stored == stored
    assert classify(hidden, OTHER_CONN, AT).server == "other.fabrikam.com"


_host = st.sampled_from(["ex02.contoso.com", "EX02.Contoso.COM.", "mail.outlook.com", "x.protection.outlook.com",
                         "by", "", "ex.contoso.local"])
_build = st.sampled_from(["15.2.1544.4", "15.1.2507.39", "15.20.7633.1", "14.3.487.0", "8.3.517.0", "15.2.9999.9",
                          "1.2.3", "15.01.2507.039"])
_with = st.sampled_from(["Microsoft SMTP Server", "mapi", "microsoft smtp server", "ESMTPS", "Microsoft SMTPSVC"])
_from = st.sampled_from(["from EX01.contoso.local (10.0.0.5) ", "from mail pickup service ", "", "from x (a; b) "])
_tail = st.sampled_from(["Sat, 28 Nov 2026 08:00:00 +0000", "Sat, 28 Nov 2026 23:59:59 +0000", "", "x (y)", "a; b",
                         "(Exim 4.96)", "Sendmail 8.12.11"])


@settings(max_examples=300, deadline=None)
@given(frm=_from, host=_host, w=_with, build=_build, tails=st.lists(_tail, min_size=2, max_size=4),
       day=st.sampled_from([AT, datetime(2026, 11, 29, 1, tzinfo=UTC)]))
def test_cached_equals_uncached(frm: str, host: str, w: str, build: str, tails: list[str], day: datetime) -> None:
    cache = hop_cache_for(default_catalog(), default_policy())
    cache.clear()
    for i, tail in enumerate(tails):  # the same stamp on another message (other date, other lower hops)
        headers = [("Received", f"{frm}by {host} with {w} id {build}; {tail}"),
                   ("Received", f"from lower{i} by relay with mapi id 15.2.1544.4; {tail}")]
        connection = CONN if i % 2 else OTHER_CONN
        cached = classify(headers, connection, day)
        uncached = classify(headers, connection, day, cached=False)
        assert isinstance(cached, Classification)
        assert cached == uncached
        assert cached.to_json_dict() == uncached.to_json_dict()


# ------------------------------------------------------------------------------------ result records


def test_results_are_built_with_the_layout_of_the_class() -> None:
    names = tuple(f.name for f in dataclasses.fields(Classification))
    assert _DraftClassification.__slots__ == Classification.__slots__ == names  # type: ignore[attr-defined]
    values = {name: f"value-{name}" for name in names}
    built = _build_classification(*values.values())  # type: ignore[arg-type]
    assert type(built) is Classification and built == Classification(**values)  # type: ignore[arg-type]
    assert hash(built) == hash(Classification(**values))  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.server = "changed"  # type: ignore[misc]
