"""The Exchange Server build catalog: every released on-premises build, indexed by build number.

Data lives in ``processors/data/exchange-builds.csv`` (one row per released build; its ``notes``
column names the sources that confirm the row) and ``exchange-lifecycle.csv`` (one row per product
with its support dates; ``source_url`` and ``source_detail`` say where the dates come from).

Builds are handled as 4-tuples of ints ``(major, minor, build, revision)``. Both text formats are
accepted wherever a build is read: the short format ``15.1.2507.39`` and the long (zero-padded) format
``15.01.2507.039``.

:func:`check_catalog` validates a builds CSV and reports problems as ``line N: ...``;
:func:`load_catalog` validates too and refuses a bad file (:class:`CatalogFormatError`).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from processors.errors import PatchgateError

BuildTuple = tuple[int, int, int, int]

BUILDS_FILE = "exchange-builds.csv"
LIFECYCLE_FILE = "exchange-lifecycle.csv"

COLUMNS: tuple[str, ...] = (
    "product",
    "release_name",
    "short_build",
    "long_build",
    "release_date",
    "kind",
    "cu",
    "notes",
)
LIFECYCLE_COLUMNS: tuple[str, ...] = (
    "product",
    "policy",
    "start_date",
    "mainstream_end",
    "extended_end",
    "esu_end",
)

EX2007 = "Exchange Server 2007"
EX2010 = "Exchange Server 2010"
EX2013 = "Exchange Server 2013"
EX2016 = "Exchange Server 2016"
EX2019 = "Exchange Server 2019"
EXSE = "Exchange Server SE"
PRODUCTS: tuple[str, ...] = (EX2007, EX2010, EX2013, EX2016, EX2019, EXSE)
KINDS: frozenset[str] = frozenset({"RTM", "SP", "RU", "CU", "SU", "HU"})
#: Products whose Received-header builds only match the catalog on major.minor (the SP level).
SP_LEVEL_PRODUCTS: frozenset[str] = frozenset({EX2007, EX2010})
#: First build number of Exchange Server SE within 15.2 (SE RTM is 15.2.2562.17; every 15.2 build
#: below 2562 is Exchange 2019).
SE_FIRST_BUILD = 2562

_MAX_PART_DIGITS = 6


def parse_build(text: str | None) -> BuildTuple | None:
    """Parse a build in the short (``15.1.2507.39``) or long (``15.01.2507.039``) format.

    Returns ``None`` for anything that is not exactly four dot-separated decimal numbers (surrounding
    whitespace is ignored). Never raises.
    """
    if not text or not isinstance(text, str) or len(text) > 40:
        return None
    parts = text.strip().split(".")
    if len(parts) != 4:
        return None
    out: list[int] = []
    for part in parts:
        # isascii() + isdigit(): reject non-ASCII (e.g. Arabic-Indic) digits, which int() would accept
        if not part or len(part) > _MAX_PART_DIGITS or not (part.isascii() and part.isdigit()):
            return None
        out.append(int(part))
    return (out[0], out[1], out[2], out[3])


def format_short(build: BuildTuple) -> str:
    """``(15, 1, 2507, 39)`` -> ``15.1.2507.39``."""
    return f"{build[0]}.{build[1]}.{build[2]}.{build[3]}"


def format_long(build: BuildTuple) -> str:
    """``(15, 1, 2507, 39)`` -> ``15.01.2507.039`` (minor 2, build 4, revision 3 digits)."""
    return f"{build[0]}.{build[1]:02d}.{build[2]:04d}.{build[3]:03d}"


def product_for_build(build: BuildTuple) -> str | None:
    """The product a build belongs to, decided by major.minor alone (``None`` if no product).

    8.x = 2007, 14.x = 2010, 15.0 = 2013, 15.1 = 2016, 15.2 below build 2562 = 2019, 15.2 from
    build 2562 = SE. Exchange Online's 15.20+/15.21+ builds and anything else give ``None``.
    """
    major, minor = build[0], build[1]
    if major == 8:
        return EX2007
    if major == 14:
        return EX2010
    if major == 15:
        if minor == 0:
            return EX2013
        if minor == 1:
            return EX2016
        if minor == 2:
            return EXSE if build[2] >= SE_FIRST_BUILD else EX2019
    return None


def _product_accepts(product: str, build: BuildTuple) -> bool:
    return product_for_build(build) == product


def servicing_group(product: str, cu: str) -> str:
    """The servicing group of a catalog row: the CU for 2013 and later, the SP level for 2007/2010.

    2007/2010 rows carry ``SP3 RU23`` in ``cu``; rollups are per service pack, so the group is the
    first word (``SP3``, or ``RTM``).
    """
    if product in SP_LEVEL_PRODUCTS:
        return cu.split(" ", 1)[0]
    return cu


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildRow:
    """One catalog row (one released build)."""

    product: str
    release_name: str
    build: BuildTuple
    short: str
    long: str
    release_date: date
    kind: str
    cu: str
    notes: str
    line: int
    group: str

    @property
    def esu_only(self) -> bool:
        """True if the row's notes say it went to ESU customers only."""
        return "ESU" in self.notes and "only" in self.notes


@dataclass(frozen=True, kw_only=True, slots=True)
class LifecycleRow:
    """One product's lifecycle dates. ``esu_end`` ``YYYY-MM`` is read as the last day of that month."""

    product: str
    policy: str
    start_date: date
    mainstream_end: date | None
    extended_end: date | None
    esu_end: date | None
    notes: str


@dataclass(frozen=True, slots=True)
class CatalogError:
    """One problem found by :func:`check_catalog`; ``str()`` gives ``line N: message``."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


ERRORS_SHOWN = 5


def errors_summary(errors: Sequence[CatalogError]) -> str:
    """The first :data:`ERRORS_SHOWN` problems joined by ``; ``, then how many more there are."""
    shown = "; ".join(str(e) for e in errors[:ERRORS_SHOWN])
    more = f" (+{len(errors) - ERRORS_SHOWN} more)" if len(errors) > ERRORS_SHOWN else ""
    return shown + more


class CatalogFileError(PatchgateError, ValueError):
    """A catalog file that fails its check: its source, every problem, the first few in the message."""

    what = "catalog"

    def __init__(self, source: str, errors: list[CatalogError]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: invalid {self.what}: {errors_summary(errors)}")


class CatalogFormatError(CatalogFileError):
    """Raised by :func:`load_catalog` for a catalog that fails :func:`check_catalog`."""

    what = "build catalog"


@dataclass(frozen=True, kw_only=True, slots=True)
class Catalog:
    """The loaded build catalog (immutable). Build with :func:`load_catalog`."""

    rows: tuple[BuildRow, ...]
    lifecycle: Mapping[str, LifecycleRow]
    sha256: str
    source: str
    _by_build: Mapping[BuildTuple, BuildRow] = field(repr=False, compare=False)
    _by_group: Mapping[tuple[str, str], tuple[BuildRow, ...]] = field(repr=False, compare=False)
    _by_product: Mapping[str, tuple[BuildRow, ...]] = field(repr=False, compare=False)
    _by_build_number: Mapping[tuple[int, int, int], str] = field(repr=False, compare=False)

    def lookup(self, build: BuildTuple | str) -> BuildRow | None:
        """The row for an exact build (tuple, short or long text), or ``None``."""
        if isinstance(build, str):
            parsed = parse_build(build)
            if parsed is None:
                return None
            build = parsed
        return self._by_build.get(build)

    def __contains__(self, build: object) -> bool:
        if isinstance(build, tuple | str):
            return self.lookup(build) is not None  # type: ignore[arg-type]
        return False

    def group_rows(self, product: str, group: str) -> tuple[BuildRow, ...]:
        """Rows of one product's CU (or SP level for 2007/2010), ordered by build."""
        return self._by_group.get((product, group), ())

    def rows_for_cu(self, product: str, cu: str) -> tuple[BuildRow, ...]:
        """Rows whose ``cu`` column equals ``cu`` exactly (e.g. ``CU23``, ``SP3 RU23``), by build."""
        return tuple(r for r in self._by_product.get(product, ()) if r.cu == cu)

    def product_rows(self, product: str) -> tuple[BuildRow, ...]:
        """All rows of a product ordered by build."""
        return self._by_product.get(product, ())

    def groups(self, product: str) -> tuple[str, ...]:
        """The product's servicing groups, ordered by their first build."""
        seen: dict[str, None] = {}
        for row in self._by_product.get(product, ()):
            seen.setdefault(row.group, None)
        return tuple(seen)

    def group_of_build_number(self, build: BuildTuple) -> str | None:
        """The group of any row sharing major.minor.build (for an unknown revision), or ``None``."""
        return self._by_build_number.get(build[:3])  # type: ignore[arg-type]

    @property
    def newest(self) -> BuildRow:
        """The newest row: latest release date, then highest build."""
        return max(self.rows, key=lambda r: (r.release_date, r.build))

    @property
    def row_count(self) -> int:
        return len(self.rows)

    @property
    def version(self) -> str:
        """A short identification of this catalog: newest build, date, row count, checksum prefix."""
        n = self.newest
        return f"{n.short} {n.release_date.isoformat()} rows={len(self.rows)} sha256={self.sha256[:12]}"


# --------------------------------------------------------------------------------------------- check


def _parse_date(text: str) -> date | None:
    try:
        if len(text) != 10:
            return None
        return date.fromisoformat(text)
    except ValueError:
        return None


def _end_of_month(text: str) -> date | None:
    """``YYYY-MM`` -> last day of that month; ``YYYY-MM-DD`` -> that day; else ``None``."""
    if len(text) == 7 and text[4] == "-":
        try:
            y, m = int(text[:4]), int(text[5:])
            if not 1 <= m <= 12:
                return None
            nxt = date(y + (m == 12), m % 12 + 1, 1)
            return date.fromordinal(nxt.toordinal() - 1)
        except ValueError:
            return None
    return _parse_date(text)


@dataclass(frozen=True, kw_only=True, slots=True)
class _RowText:
    """The text of one builds-CSV row, by column."""

    product: str
    release_name: str
    short_build: str
    long_build: str
    release_date: str
    kind: str
    cu: str
    notes: str


def _check_rows(text: str) -> tuple[list[CatalogError], list[BuildRow]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header, header_errors = _read_header(reader)
    if header is None:
        return header_errors, []
    idx = {name: header.index(name) for name in COLUMNS}
    errors: list[CatalogError] = []
    rows: list[BuildRow] = []
    seen: dict[BuildTuple, int] = {}
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(CatalogError(reader.line_num, f"unreadable CSV row: {exc}"))
            break
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            errors.append(CatalogError(line, f"expected {len(header)} fields, got {len(fields)}"))
            continue
        row_errors, row = _check_row(line, _RowText(**{name: fields[i] for name, i in idx.items()}), seen)
        errors.extend(row_errors)
        if row is not None:
            rows.append(row)
    if not errors and not rows:
        errors.append(CatalogError(1, "no build rows"))
    return errors, rows


def _read_header(reader: Iterator[list[str]]) -> tuple[list[str] | None, list[CatalogError]]:
    """The header row, or ``None`` and why the file cannot be checked further."""
    try:
        header = next(reader)
    except StopIteration:
        return None, [CatalogError(1, "empty file: expected a header row")]
    except csv.Error as exc:
        return None, [CatalogError(1, f"unreadable CSV header: {exc}")]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return None, [CatalogError(1, f"missing column(s): {', '.join(missing)}")]
    return header, []


def _check_row(line: int, row: _RowText, seen: dict[BuildTuple, int]) -> tuple[list[CatalogError], BuildRow | None]:
    """Every check of one row, in column order; the row is kept only if it passes them all."""
    released = _parse_date(row.release_date)
    build = parse_build(row.short_build)
    problems = [
        *_text_column_problems(row),
        *_release_date_problems(row, released),
        *_build_problems(row, build),
        *_duplicate_problems(row, build, line, seen),
    ]
    errors = [CatalogError(line, message) for message in problems]
    if problems or build is None or released is None:
        return errors, None
    return errors, BuildRow(
        product=row.product,
        release_name=row.release_name,
        build=build,
        short=row.short_build,
        long=format_long(build),
        release_date=released,
        kind=row.kind,
        cu=row.cu,
        notes=row.notes,
        line=line,
        group=servicing_group(row.product, row.cu),
    )


def _text_column_problems(row: _RowText) -> list[str]:
    """A known product, a release name, a CU and a known kind."""
    problems: list[str] = []
    if row.product not in PRODUCTS:
        problems.append(f"unknown product {row.product!r}")
    if not row.release_name.strip():
        problems.append("empty release_name")
    if not row.cu.strip():
        problems.append("empty cu")
    if row.kind not in KINDS:
        allowed = ", ".join(sorted(KINDS))
        problems.append(f"bad kind {row.kind!r} (expected one of {allowed})")
    return problems


def _release_date_problems(row: _RowText, released: date | None) -> list[str]:
    """A release date in the ``YYYY-MM-DD`` format."""
    if released is None:
        return [f"bad release_date {row.release_date!r} (expected YYYY-MM-DD)"]
    return []


def _build_problems(row: _RowText, build: BuildTuple | None) -> list[str]:
    """Both build formats exactly as :func:`format_short`/:func:`format_long` write them, naming the
    same build, and that build within the row's product's range."""
    problems: list[str] = []
    short_text, long_text = row.short_build, row.long_build
    long_ = parse_build(long_text)
    if build is None or format_short(build) != short_text:
        problems.append(f"bad short_build {short_text!r}")
    if long_ is None or format_long(long_) != long_text:
        problems.append(f"bad long_build {long_text!r}")
    if build is not None and long_ is not None and build != long_:
        problems.append(f"short_build {short_text} and long_build {long_text} differ")
    if build is not None and row.product in PRODUCTS and not _product_accepts(row.product, build):
        problems.append(
            f"build {short_text} is outside the range of {row.product} "
            f"(major.minor says {product_for_build(build) or 'no product'})"
        )
    return problems


def _duplicate_problems(row: _RowText, build: BuildTuple | None, line: int, seen: dict[BuildTuple, int]) -> list[str]:
    """Each build once; ``seen`` remembers the line of every build's first row."""
    if build is None:
        return []
    first = seen.get(build)
    if first is not None:
        return [f"duplicate build {row.short_build} (first at line {first})"]
    seen[build] = line
    return []


def check_catalog(path: str | Path) -> list[CatalogError]:
    """Validate a builds CSV; return its problems (empty list = valid).

    Raises ``OSError``/``UnicodeDecodeError`` if the file cannot be read as UTF-8 text.
    """
    data = Path(path).read_bytes()
    errors, _rows = _check_rows(data.decode("utf-8"))
    return errors


def check_lifecycle(text: str) -> tuple[list[CatalogError], dict[str, LifecycleRow]]:
    """Validate lifecycle CSV text; return errors and the rows by product."""
    errors: list[CatalogError] = []
    out: dict[str, LifecycleRow] = {}
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in LIFECYCLE_COLUMNS if c not in header]
    if missing:
        return [CatalogError(1, f"missing column(s): {', '.join(missing)}")], {}
    for rec in reader:
        line = reader.line_num
        problems, row = _check_lifecycle_row(rec, out)
        errors.extend(CatalogError(line, message) for message in problems)
        if row is not None:
            out[row.product] = row
    for product in PRODUCTS:
        if product not in out and not errors:
            errors.append(CatalogError(1, f"no lifecycle row for {product!r}"))
    return errors, out


def _check_lifecycle_row(
    rec: Mapping[str, str | None], seen: Mapping[str, LifecycleRow]
) -> tuple[list[str], LifecycleRow | None]:
    """One lifecycle row: a known product not seen before, a start date, and well-formed end dates."""
    product = rec.get("product") or ""
    if product not in PRODUCTS:
        return [f"unknown product {product!r}"], None
    start = _parse_date(rec.get("start_date") or "")
    if start is None:
        return [f"bad start_date {rec.get('start_date')!r}"], None
    problems, dates = _lifecycle_end_dates(rec)
    if problems:
        return problems, None
    if product in seen:
        return [f"duplicate product {product!r}"], None
    return [], LifecycleRow(
        product=product,
        policy=(rec.get("policy") or "").strip(),
        start_date=start,
        mainstream_end=dates["mainstream_end"],
        extended_end=dates["extended_end"],
        esu_end=dates["esu_end"],
        notes=rec.get("notes") or "",
    )


def _lifecycle_end_dates(rec: Mapping[str, str | None]) -> tuple[list[str], dict[str, date | None]]:
    """The optional end dates (``esu_end`` may be a month, read as its last day)."""
    problems: list[str] = []
    dates: dict[str, date | None] = {}
    for col in ("mainstream_end", "extended_end", "esu_end"):
        raw = (rec.get(col) or "").strip()
        if not raw:
            dates[col] = None
            continue
        parsed = _end_of_month(raw) if col == "esu_end" else _parse_date(raw)
        if parsed is None:
            problems.append(f"bad {col} {raw!r}")
        dates[col] = parsed
    return problems, dates


# ---------------------------------------------------------------------------------------------- load


def _read_packaged(name: str) -> bytes:
    return resources.files("processors").joinpath("data", name).read_bytes()


def build_catalog(builds_bytes: bytes, lifecycle_bytes: bytes, *, source: str = "<memory>") -> Catalog:
    """Build a :class:`Catalog` from file contents; raises :class:`CatalogFormatError` if invalid."""
    errors, rows = _check_rows(builds_bytes.decode("utf-8"))
    if errors:
        raise CatalogFormatError(source, errors)
    lc_errors, lifecycle = check_lifecycle(lifecycle_bytes.decode("utf-8"))
    if lc_errors:
        raise CatalogFormatError(f"{source} (lifecycle)", lc_errors)
    return _index(tuple(rows), lifecycle, hashlib.sha256(builds_bytes).hexdigest(), source)


def _index(rows: tuple[BuildRow, ...], lifecycle: dict[str, LifecycleRow], sha: str, source: str) -> Catalog:
    by_build = {r.build: r for r in rows}
    by_product: dict[str, list[BuildRow]] = {}
    by_group: dict[tuple[str, str], list[BuildRow]] = {}
    by_number: dict[tuple[int, int, int], str] = {}
    for r in sorted(rows, key=lambda r: r.build):
        by_product.setdefault(r.product, []).append(r)
        by_group.setdefault((r.product, r.group), []).append(r)
        by_number.setdefault((r.build[0], r.build[1], r.build[2]), r.group)
    return Catalog(
        rows=rows,
        lifecycle=MappingProxyType(dict(lifecycle)),
        sha256=sha,
        source=source,
        _by_build=MappingProxyType(by_build),
        _by_group=MappingProxyType({k: tuple(v) for k, v in by_group.items()}),
        _by_product=MappingProxyType({k: tuple(v) for k, v in by_product.items()}),
        _by_build_number=MappingProxyType(by_number),
    )


def load_catalog(path: str | Path | None = None, lifecycle_path: str | Path | None = None) -> Catalog:
    """Load and validate a catalog.

    ``path=None`` loads the packaged ``processors/data/exchange-builds.csv``. The lifecycle file is
    ``lifecycle_path``, else an ``exchange-lifecycle.csv`` next to ``path``, else the packaged one.
    """
    if path is None:
        builds = _read_packaged(BUILDS_FILE)
        source = f"processors/data/{BUILDS_FILE}"
    else:
        builds = Path(path).read_bytes()
        source = str(path)
    if lifecycle_path is not None:
        lifecycle = Path(lifecycle_path).read_bytes()
    elif path is not None and (Path(path).parent / LIFECYCLE_FILE).is_file():
        lifecycle = (Path(path).parent / LIFECYCLE_FILE).read_bytes()
    else:
        lifecycle = _read_packaged(LIFECYCLE_FILE)
    return build_catalog(builds, lifecycle, source=source)


def iter_products(catalog: Catalog) -> Iterable[str]:
    """Products present in the catalog, in release order."""
    return (p for p in PRODUCTS if catalog.product_rows(p))
