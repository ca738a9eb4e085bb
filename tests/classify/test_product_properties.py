"""Property tests: no header text makes classification raise, and only the topmost hop decides for
every product (a vulnerable stamp in a lower hop never changes the verdict)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.classify import STATUSES, Connection, classify
from processors.classify.stamps import recognise

AT = datetime(2026, 11, 28, 12, tzinfo=UTC)
CONN = Connection("192.0.2.7", "client.example.net")

#: One old stamp per product: each would decide if it were the topmost hop.
VULNERABLE_STAMPS = (
    "from a.example (a.example [198.51.100.1]) by old-exim.example with esmtp (Exim 4.87) id 1x; {date}",
    "from a.example by old-sendmail.example (8.13.6/8.13.6) with ESMTP id x1; {date}",
    "from a.example by old-domino.example (Lotus Domino Release 8.5.3FP6) with ESMTP id 2013; {date}",
    "from a.example ([198.51.100.1]) by old-iis.example with Microsoft SMTPSVC(6.0.3790.4675); {date}",
    "from a.example by old-mdaemon.example (MDaemon PRO v9.6.5) with ESMTP id md5.msg; {date}",
    "from a.example by old-kerio.example (Kerio Connect 6.3.0) with ESMTP; {date}",
    "from a.example by old-cgp.example (CommuniGate Pro SMTP 5.0.9) with ESMTP id 1; {date}",
    "from a.example by old-icewarp.example (IceWarp 10.3.0) with ESMTP id x; {date}",
    "from a.example (10.0.0.5) by old-ex.example (10.0.0.6) with Microsoft SMTP Server id 14.3.487.0; {date}",
)
#: Topmost hops of every kind: current or unknown versions, no version, look-alikes, garbage.
TOP_HOPS = (
    "from b.example by mx.example (Postfix) with ESMTPS id 4X; {date}",
    "from b.example by new-exim.example with esmtps (TLS1.3) tls TLS_AES_256_GCM_SHA384 (Exim 4.99.9) id 1y; {date}",
    "from b.example by mx0a.pphosted.com (8.16.0.42/8.16.0.42) with ESMTP id z; {date}",
    "from user by host.example with local (Exim 4.87) id 1z; {date}",
    "from b.example (10.0.0.5) by se.example (10.0.0.6) with Microsoft SMTP Server id 15.2.2562.53; {date}",
    "from b.example by iis2022.example with Microsoft SMTPSVC(10.0.20348.1); {date}",
    "(qmail 12345 invoked from network); {date}",
    "from b.example by stripped.example with ESMTP id q; {date}",
    "from b.example by x.example (Exim) id 1; {date}",
)
DATE = "Tue, 2 Jul 2024 10:11:12 +0000"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.text(max_size=300), max_size=4), name=st.sampled_from(["Received", "received", "X"]))
def test_no_text_makes_classification_raise(values: list[str], name: str) -> None:
    r = classify([(name, v) for v in values], CONN, AT)
    assert r.status in STATUSES and r.rule and r.reason


_STAMP_PIECES = st.sampled_from(
    ["(Exim ", "(8.", "Domino Release ", "SMTPSVC(", "MDaemon PRO v", "Kerio Connect ", "CommuniGate Pro SMTP ",
     "IceWarp ", "Merak ", "4.87", "9.0.1FP", "FP", "/", ")", "(", " by ", "by ", " with ", "local ", "\r\n ",
     "\t", "\\", ";", "esmtpa ", "[127.0.0.1]", "#3", "_1", ".", "0", "patch 1", "pphosted.com", "(Postfix)"]
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(_STAMP_PIECES, max_size=40))
def test_stamp_shaped_text_never_raises(pieces: list[str]) -> None:
    value = "".join(pieces)
    stamp = recognise(value)
    assert (stamp.version is not None) == (stamp.kind == "versioned")
    r = classify([("Received", value)], CONN, AT)
    assert r.status in STATUSES
    if r.product is None:
        assert not r.enforceable


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    top=st.sampled_from(TOP_HOPS),
    lower=st.lists(st.sampled_from(VULNERABLE_STAMPS), min_size=1, max_size=5),
)
def test_topmost_hop_rule_holds_for_every_product(top: str, lower: list[str]) -> None:
    alone = classify([("Received", top.format(date=DATE))], CONN, AT)
    chain = [("Received", top.format(date=DATE))] + [("Received", v.format(date=DATE)) for v in lower]
    decided = classify(chain, CONN, AT)
    got = (decided.product, decided.version, decided.status, decided.rule, decided.server, decided.enforced)
    assert got == (alone.product, alone.version, alone.status, alone.rule, alone.server, alone.enforced)


def test_every_lower_stamp_decides_when_topmost() -> None:
    # the lower hops of the property above would decide if they were on top: each is attributed,
    # and the ones whose line is past its end of support (or behind) say so
    products = set()
    for value in VULNERABLE_STAMPS:
        r = classify([("Received", value.format(date=DATE))], CONN, AT)
        assert r.product is not None and r.version is not None, (value, r.reason)
        products.add(r.product)
    assert len(products) == len(VULNERABLE_STAMPS)
    for value in (VULNERABLE_STAMPS[0], VULNERABLE_STAMPS[3], VULNERABLE_STAMPS[-1]):
        r = classify([("Received", value.format(date=DATE))], CONN, AT)
        assert r.status in {"behind", "unsupported"}, (value, r.status, r.reason)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stamp=st.sampled_from(VULNERABLE_STAMPS + TOP_HOPS), data=st.data())
def test_folding_never_changes_the_attribution(stamp: str, data: st.DataObject) -> None:
    value = stamp.format(date=DATE)
    spaces = [i for i, ch in enumerate(value) if ch == " "]
    folds = data.draw(st.sets(st.sampled_from(spaces), max_size=6))
    folded = "".join("\r\n\t" if i in folds else ch for i, ch in enumerate(value))
    a = classify([("Received", value)], CONN, AT)
    b = classify([("Received", folded)], CONN, AT)
    assert (b.product, b.version, b.status) == (a.product, a.version, a.status)
