"""Build catalog: loading, lookups, build formats, checksum, and check_catalog's errors."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.classify import (
    CatalogFormatError,
    check_catalog,
    format_long,
    format_short,
    load_catalog,
    parse_build,
    product_for_build,
)
from processors.classify.catalog import COLUMNS, CatalogError
from processors.classify.products import ProductCatalogError

DATA = Path(__file__).resolve().parents[2] / "processors" / "data"
HEADER = ",".join(COLUMNS)


def test_packaged_catalog_passes_its_own_check() -> None:
    assert check_catalog(DATA / "exchange-builds.csv") == []


def test_load_packaged() -> None:
    cat = load_catalog()
    assert cat.row_count == 419
    assert cat.sha256 == hashlib.sha256((DATA / "exchange-builds.csv").read_bytes()).hexdigest()
    newest = cat.newest
    assert newest.short == "15.2.2562.53" and newest.release_date == date(2026, 10, 2)
    assert "15.2.2562.53" in cat.version and "rows=419" in cat.version
    assert set(cat.lifecycle) == {f"Exchange Server {p}" for p in ("2007", "2010", "2013", "2016", "2019", "SE")}
    assert cat.lifecycle["Exchange Server 2019"].esu_end == date(2026, 10, 31)
    assert cat.lifecycle["Exchange Server 2016"].extended_end == date(2025, 10, 14)


def test_lookups_short_long_tuple() -> None:
    cat = load_catalog()
    row = cat.lookup("15.1.2507.39")
    assert row is not None and row.release_name == "Exchange Server 2016 CU23 Apr24HU"
    assert cat.lookup("15.01.2507.039") is row
    assert cat.lookup((15, 1, 2507, 39)) is row
    assert row.long == "15.01.2507.039" and row.group == "CU23" and row.kind == "HU"
    assert cat.lookup("15.1.2507.38") is None
    assert cat.lookup("garbage") is None
    assert "15.2.2562.53" in cat and "1.2.3.4" not in cat


def test_group_and_cu_lookups_are_ordered() -> None:
    cat = load_catalog()
    rows = cat.group_rows("Exchange Server 2019", "CU15")
    assert rows[0].short == "15.2.1748.10" and rows[-1].short == "15.2.1748.53"
    assert [r.build for r in rows] == sorted(r.build for r in rows)
    assert cat.rows_for_cu("Exchange Server 2010", "SP3 RU32")[0].short == "14.3.513.0"
    sp3 = cat.group_rows("Exchange Server 2010", "SP3")
    assert sp3[0].release_name == "Exchange Server 2010 SP3" and len(sp3) > 30
    assert cat.groups("Exchange Server SE") == ("RTM",)
    assert cat.group_of_build_number((15, 1, 2507, 999)) == "CU23"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15.1.2507.39", (15, 1, 2507, 39)),
        ("15.01.2507.039", (15, 1, 2507, 39)),
        (" 8.03.0517.000 ", (8, 3, 517, 0)),
        ("14.3.487.0", (14, 3, 487, 0)),
        ("15.1.2507", None),
        ("15.1.2507.39.1", None),
        ("15.1.x.39", None),
        ("15..2507.39", None),
        ("", None),
        ("15.1.2507.-3", None),
        ("1234567.1.1.1", None),
        ("15.\u0661.1.1", None),  # Arabic-Indic digit: int() would take it
        ("15.1.2507.39;", None),
    ],
)
def test_parse_build(text: str, expected: object) -> None:
    assert parse_build(text) == expected


@given(st.tuples(*(st.integers(0, 99999) for _ in range(4))))
def test_formats_round_trip(b: tuple[int, int, int, int]) -> None:
    assert parse_build(format_short(b)) == b
    assert parse_build(format_long(b)) == b


def test_format_examples() -> None:
    assert format_long((15, 2, 1544, 14)) == "15.02.1544.014"
    assert format_long((8, 3, 517, 0)) == "8.03.0517.000"
    assert format_short((15, 2, 1544, 14)) == "15.2.1544.14"


@pytest.mark.parametrize(
    ("build", "product"),
    [
        ((8, 3, 517, 0), "Exchange Server 2007"),
        ((14, 3, 513, 0), "Exchange Server 2010"),
        ((15, 0, 1497, 48), "Exchange Server 2013"),
        ((15, 1, 2507, 39), "Exchange Server 2016"),
        ((15, 2, 1748, 10), "Exchange Server 2019"),
        ((15, 2, 2561, 99), "Exchange Server 2019"),
        ((15, 2, 2562, 17), "Exchange Server SE"),
        ((15, 20, 7633, 12), None),
        ((16, 0, 1, 1), None),
    ],
)
def test_product_for_build(build: tuple[int, int, int, int], product: str | None) -> None:
    assert product_for_build(build) == product


def test_every_row_matches_its_product_range() -> None:
    for row in load_catalog().rows:
        assert product_for_build(row.build) == row.product, row


# ------------------------------------------------------------------------------------ check_catalog

GOOD = [
    "Exchange Server 2016,Exchange Server 2016 CU23,15.1.2507.6,15.01.2507.006,2022-04-20,CU,CU23,",
    "Exchange Server 2016,Exchange Server 2016 CU23 Aug23SU,15.1.2507.31,15.01.2507.031,2023-08-08,SU,CU23,KB",
    'Exchange Server SE,Exchange Server SE RTM,15.2.2562.17,15.02.2562.017,2025-07-01,RTM,RTM,"a, quoted note"',
]


def _write(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    p = tmp_path / "builds.csv"
    p.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return p


def test_check_valid_file(tmp_path: Path) -> None:
    assert check_catalog(_write(tmp_path, GOOD)) == []
    assert check_catalog(DATA / "exchange-builds.csv") == []


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        (GOOD[0], "duplicate build 15.1.2507.6 (first at line 2)"),
        (
            "Exchange Server 2016,x,15.1.2507.40,15.01.2507.040,2023-02-30,SU,CU23,",
            "bad release_date '2023-02-30'",
        ),
        ("Exchange Server 2016,x,15.1.2507.40,15.01.2507.040,23-01-01,SU,CU23,", "bad release_date '23-01-01'"),
        ("Exchange Server 2020,x,15.1.2507.40,15.01.2507.040,2023-01-01,SU,CU23,", "unknown product"),
        ("Exchange Server 2016,x,15.1.2507.40,15.01.2507.040,2023-01-01,XU,CU23,", "bad kind 'XU'"),
        (
            "Exchange Server 2016,x,15.2.2507.40,15.02.2507.040,2023-01-01,SU,CU23,",
            "outside the range of Exchange Server 2016",
        ),
        (
            "Exchange Server 2019,x,15.2.2562.40,15.02.2562.040,2023-01-01,SU,CU23,",
            "outside the range of Exchange Server 2019 (major.minor says Exchange Server SE)",
        ),
        (
            "Exchange Server SE,x,15.2.1748.40,15.02.1748.040,2023-01-01,SU,RTM,",
            "outside the range of Exchange Server SE",
        ),
        ("Exchange Server 2007,x,14.3.1.0,14.03.0001.000,2010-01-01,RU,SP3 RU1,", "outside the range"),
        (
            "Exchange Server 2016,x,15.1.2507.40,15.01.2507.041,2023-01-01,SU,CU23,",
            "short_build 15.1.2507.40 and long_build 15.01.2507.041 differ",
        ),
        ("Exchange Server 2016,x,15.1.2507.40,15.1.2507.40,2023-01-01,SU,CU23,", "bad long_build '15.1.2507.40'"),
        ("Exchange Server 2016,x,15.01.2507.40,15.01.2507.040,2023-01-01,SU,CU23,", "bad short_build"),
        ("Exchange Server 2016,x,15.1.2507.40,15.01.2507.040,2023-01-01,SU", "expected 8 fields, got 6"),
        ("Exchange Server 2016,,15.1.2507.40,15.01.2507.040,2023-01-01,SU,CU23,", "empty release_name"),
    ],
)
def test_check_catches_error_with_line(tmp_path: Path, bad_row: str, message: str) -> None:
    rows = [*GOOD[:2], bad_row, GOOD[2]]
    errors = check_catalog(_write(tmp_path, rows))
    assert len(errors) >= 1
    assert errors[0].line == 4, errors
    assert message in errors[0].message, errors
    assert str(errors[0]).startswith("line 4: ")


def test_check_line_numbers_count_multiline_fields(tmp_path: Path) -> None:
    rows = [
        'Exchange Server 2016,Exchange Server 2016 CU23,15.1.2507.6,15.01.2507.006,2022-04-20,CU,CU23,"two\nlines"',
        "Exchange Server 2016,x,15.1.2507.6,15.01.2507.006,2022-04-20,CU,CU23,",
    ]
    errors = check_catalog(_write(tmp_path, rows))
    assert [(e.line, "duplicate" in e.message) for e in errors] == [(4, True)]


def test_check_missing_columns(tmp_path: Path) -> None:
    header = HEADER.replace(",kind", "")
    errors = check_catalog(_write(tmp_path, [], header=header))
    assert [str(e) for e in errors] == ["line 1: missing column(s): kind"]


def test_check_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text("")
    assert [e.line for e in check_catalog(p)] == [1]


def test_check_unreadable(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        check_catalog(tmp_path / "missing.csv")


def test_load_refuses_bad_catalog(tmp_path: Path) -> None:
    p = _write(tmp_path, [*GOOD, GOOD[1]])
    with pytest.raises(CatalogFormatError) as exc:
        load_catalog(p)
    assert "line 5: duplicate build 15.1.2507.31" in str(exc.value)


def test_load_other_catalog_uses_packaged_lifecycle(tmp_path: Path) -> None:
    cat = load_catalog(_write(tmp_path, GOOD))
    assert cat.row_count == 3 and "Exchange Server SE" in cat.lifecycle
    assert cat.source.endswith("builds.csv")


def test_both_catalog_errors_list_five_problems_then_how_many_more() -> None:
    problems = [CatalogError(line, "bad") for line in range(2, 9)]
    shown = "line 2: bad; line 3: bad; line 4: bad; line 5: bad; line 6: bad (+2 more)"
    assert str(CatalogFormatError("b.csv", problems)) == f"b.csv: invalid build catalog: {shown}"
    assert str(ProductCatalogError("p.csv", problems)) == f"p.csv: invalid product catalog: {shown}"
    assert str(CatalogFormatError("b.csv", problems[:1])) == "b.csv: invalid build catalog: line 2: bad"
    assert not issubclass(ProductCatalogError, CatalogFormatError)  # one handler does not catch the other
