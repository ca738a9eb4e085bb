"""Table-driven classification vectors (tests/classify/vectors.tsv), default catalog and policy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from processors.classify import Connection, classify
from processors.classify.cli import parse_header_block
from processors.classify.received import stamp_cache_key

VECTORS = Path(__file__).with_name("vectors.tsv")


class Vector(NamedTuple):
    label: str
    at: str
    helo: str | None
    ip: str
    server: str
    server_source: str
    build: str | None
    product: str | None
    status: str
    rule: str
    headers: str


def _opt(x: str) -> str | None:
    return None if x == "-" else x


def load_vectors() -> list[Vector]:
    out = []
    for line in VECTORS.read_text("utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        assert len(cols) == 11, line
        label, at, helo, ip, server, source, build, product, status, rule, hdr = cols
        headers = hdr.encode("ascii").decode("unicode_escape")
        out.append(
            Vector(
                label=label,
                at=at,
                helo=_opt(helo),
                ip=ip,
                server=server,
                server_source=source,
                build=_opt(build),
                product=_opt(product),
                status=status,
                rule=rule,
                headers=headers,
            )
        )
    return out


ALL = load_vectors()


def test_enough_vectors() -> None:
    assert len(ALL) >= 60
    assert len({v.label for v in ALL}) == len(ALL), "labels must be unique"


@pytest.mark.parametrize("v", ALL, ids=[v.label for v in ALL])
def test_vector(v: Vector) -> None:
    at = datetime.fromisoformat(v.at + "T12:00:00+00:00")
    r = classify(parse_header_block(v.headers), Connection(v.ip, v.helo), at)
    got = (r.server, r.server_source, r.build, r.product_name, r.status, r.rule)
    assert got == (v.server, v.server_source, v.build, v.product, v.status, v.rule), r.reason
    if r.build is not None and r.product_name is not None:  # a judged Exchange build
        assert (r.product, r.version) == ("exchange", r.build)
    assert r.reason and r.reason.endswith(".")
    assert r.vulnerable == (v.status in {"behind", "unsupported"})
    if r.vulnerable:
        assert r.recommended_builds, "a vulnerable verdict must name acceptable builds"


def test_every_product_current_behind_unsupported() -> None:
    seen = {(v.product, v.status) for v in ALL}
    for product in ("2007", "2010", "2013", "2016", "2019", "SE"):
        name = f"Exchange Server {product}"
        for status in ("current", "behind", "unsupported"):
            if (product, status) == ("SE", "unsupported"):
                continue  # SE RTM is the only SE CU so far: nothing can be on an older CU
            assert (name, status) in seen, (name, status)


def test_every_status_covered() -> None:
    statuses = {v.status for v in ALL}
    assert statuses == {"current", "behind", "unsupported", "unknown_build", "not_exchange", "no_build", "cloud"}


def test_json_dict_round_trip() -> None:
    import orjson

    v = ALL[0]
    at = datetime(2026, 11, 28, tzinfo=UTC)
    r = classify(parse_header_block(v.headers), Connection(v.ip, v.helo), at)
    d = orjson.loads(orjson.dumps(r.to_json_dict()))
    assert d["server"] == r.server and d["status"] == r.status and d["build"] == r.build
    assert d["recommended_builds"] == [{"short": b.short, "long": b.long, "name": b.name} for b in r.recommended_builds]
    assert [h["by"] for h in d["context_hops"]] == ["ex02.contoso.local", "ex01.contoso.local"]


@pytest.mark.parametrize("v", [v for v in ALL if v.server_source == "by"],
                         ids=[v.label for v in ALL if v.server_source == "by"])
def test_stamp_cache_key_ignores_only_the_date(v: Vector) -> None:
    # the worker caches "by"-named classifications per stamp_cache_key(topmost hop) and day:
    # another message's stamp with a different date must share the key and the classification
    at = datetime.fromisoformat(v.at + "T12:00:00+00:00")
    headers = parse_header_block(v.headers)
    top = next(i for i, (name, _) in enumerate(headers) if name.lower() == "received")
    value = headers[top][1]
    if ";" not in value:
        return
    redated = value.rpartition(";")[0] + "; Tue, 17 Nov 2026 23:59:58 +0000"
    other = [*headers[:top], (headers[top][0], redated), *headers[top + 1:]]
    first, second = (classify(h, Connection(v.ip, v.helo), at) for h in (headers, other))
    assert stamp_cache_key(value.rpartition(";")[0] + "; Mon, 2 Nov 2026 08:00:01 +0000") == stamp_cache_key(
        value.rpartition(";")[0] + "; Mon, 30 Nov 2026 18:10:41 +0000")
    assert (second.server, second.build, second.status, second.rule) == (first.server, first.build, first.status,
                                                                           first.rule)


def test_stamp_cache_key_keeps_what_names_the_server_and_build() -> None:
    base = "from a.local (10.0.0.5) by mail.contoso.com (10.0.0.6) with Microsoft SMTP Server id {}; {}"
    key = stamp_cache_key(base.format("15.2.2562.53", "Mon, 2 Nov 2026 08:00:01 +0000"))
    assert key == stamp_cache_key(base.format("15.2.2562.53", "Mon, 2 Nov 2026 09:41:17 +0000"))
    assert key != stamp_cache_key(base.format("15.2.2562.29", "Mon, 2 Nov 2026 08:00:01 +0000"))
    assert key != stamp_cache_key(base.replace("mail.contoso", "mx.fabrikam").format("15.2.2562.53",
                                                                                    "Mon, 2 Nov 2026 08:00:01 +0000"))
    assert stamp_cache_key("by x with SMTP id 1") == "by x with SMTP id 1"  # no date: the value itself
    with_comment = base.format("15.2.2562.53", "Mon, 2 Nov 2026 08:00:01 +0000 (UTC)")
    assert stamp_cache_key(with_comment) == with_comment  # a comment in the tail: no sharing
