"""Real published Received headers of many products (tests/classify/product_vectors.tsv).

Each row names where the header was published, the product and version it must be attributed to
(``none``: a hop whose software stamps no version, or a look-alike / submission hop that must not be
attributed), and the topmost Received value with its folding written as ``\\n``. The rule checked for
every row: product and version right, and a hop attributed to no product is never enforced.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from processors.classify import Connection, classify
from processors.classify.products import PRODUCT_NAMES

VECTORS = Path(__file__).with_name("product_vectors.tsv")
HEADER = ("source", "product", "version", "received")
AT = datetime(2026, 11, 28, 12, tzinfo=UTC)
REPORT_ONLY = frozenset({"exim", "sendmail"})

class ProductVector(NamedTuple):
    line: int
    source: str
    product: str
    version: str
    received: str


def unescape(text: str) -> str:
    """``\\n`` -> CRLF (a fold: the original leading whitespace follows), ``\\t`` -> TAB, ``\\\\`` -> ``\\``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\r\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def load_vectors() -> list[ProductVector]:
    lines = VECTORS.read_text("utf-8").splitlines()
    assert tuple(lines[0].split("\t")) == HEADER
    out = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        assert len(cols) == 4, f"line {number}: expected 4 tab-separated columns"
        source, product, version, received = cols
        out.append(ProductVector(number, source, product, version, unescape(received)))
    return out


ALL = load_vectors()


def test_vectors_cover_the_products_and_cite_sources() -> None:
    assert len(ALL) >= 100
    products = {v.product for v in ALL}
    assert {"exim", "sendmail", "domino", "smtpsvc", "none"} <= products
    assert all(v.product in {*PRODUCT_NAMES, "exchange", "none"} for v in ALL)
    assert all(v.source.startswith(("https://", "http://")) for v in ALL)
    assert all((v.product == "none") == (v.version == "") or v.product != "none" for v in ALL)


@pytest.mark.parametrize("v", ALL, ids=[f"line{v.line}-{v.product}-{v.version or 'none'}" for v in ALL])
def test_product_vector(v: ProductVector) -> None:
    r = classify([("Received", v.received)], Connection("192.0.2.1", "helo.example.net"), AT)
    product, version = v.product, v.version
    assert (r.product or "none", r.version or "") == (product, version), r.reason
    if product == "none":
        assert not r.enforceable and not r.vulnerable
    if product in REPORT_ONLY:
        assert not r.enforceable, "Exim and Sendmail are report only by default"
    assert r.reason.endswith(".")
