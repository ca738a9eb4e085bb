"""The release catalog of every mail server product other than Exchange, one CSV per product.

Data lives in ``processors/data/products/<product>.csv`` (or another folder: ``PATCHGATE_PRODUCTS_DIR``),
one row per release with the header::

    product,version,released,end_of_support,security_release,fixes,source,note

``version`` is the release's canonical version as the product stamps it (Exim ``4.96.1``, Domino
``9.0.1FP10``, SMTPSVC the Windows version prefix ``6.0.3790``); ``released`` and ``end_of_support``
are ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY`` (or empty when the vendor publishes none); a partial date
counts as the *last* day of its month or year, so that a release ages (and a product ends) no earlier
than the vendor said; a release without a date was public by the first date of a later version
(:meth:`ProductCatalog.public_by`). Each row names a public ``source``. Rows are sorted by version
on load, whatever their order in the file.

:func:`check_products_file` validates one file and reports problems as ``line N: ...``;
:func:`load_products` validates every file of a folder and refuses a bad one
(:class:`ProductCatalogError`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from processors.classify.catalog import CatalogError, CatalogFileError, _end_of_month

PRODUCTS_FOLDER = "products"

PRODUCT_COLUMNS: tuple[str, ...] = (
    "product",
    "version",
    "released",
    "end_of_support",
    "security_release",
    "fixes",
    "source",
    "note",
)

#: The stable ids of the products this catalog covers, with their display names.
PRODUCT_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "exim": "Exim",
        "sendmail": "Sendmail",
        "domino": "HCL Domino",
        "smtpsvc": "Microsoft SMTPSVC (IIS SMTP)",
        "mdaemon": "MDaemon",
        "kerio": "Kerio Connect",
        "communigate": "CommuniGate Pro",
        "icewarp": "IceWarp",
    }
)
SECURITY_VALUES = frozenset({"yes", "no", "unknown"})

VersionKey = tuple[int, ...]
_DIGITS = re.compile(r"[0-9]{1,9}")
_VERSION = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,9}){1,4}(?:[A-Za-z]{1,4}[0-9]{0,4})?(?: patch [0-9]{1,3})?\Z")
_CVE = re.compile(r"CVE-[0-9]{4}-[0-9]{4,7}\Z")
MAX_VERSION_CHARS = 40


def version_key(version: str) -> VersionKey:
    """The numbers of a version in order: ``9.0.1FP10`` -> ``(9, 0, 1, 10)``, ``4.96`` -> ``(4, 96)``.

    Versions of one product compare by this key (shorter keys are padded with zeros by the caller).
    """
    return tuple(int(d) for d in _DIGITS.findall(version[:MAX_VERSION_CHARS]))


def padded(key: VersionKey, width: int = 6) -> VersionKey:
    """``key`` padded with zeros to ``width`` numbers, so ``4.96`` sorts below ``4.96.1``."""
    return key + (0,) * (width - len(key)) if len(key) < width else key


def parse_partial_date(text: str) -> date | None:
    """``YYYY-MM-DD``; ``YYYY-MM`` or ``YYYY`` as the last day of that month or year; else ``None``."""
    if len(text) == 4 and text.isdigit():
        return date(int(text), 12, 31)
    return _end_of_month(text)


@dataclass(frozen=True, kw_only=True, slots=True)
class ProductRelease:
    """One release of one product (one CSV row)."""

    product: str
    version: str
    key: VersionKey
    released: date | None
    end_of_support: date | None
    security: str  # yes | no | unknown
    fixes: tuple[str, ...]
    source: str
    note: str
    line: int

    @property
    def display(self) -> str:
        return f"{PRODUCT_NAMES.get(self.product, self.product)} {self.version}"


class ProductCatalogError(CatalogFileError):
    """Raised by :func:`load_products` for a product file that fails :func:`check_products_text`."""

    what = "product catalog"


@dataclass(frozen=True, kw_only=True, slots=True)
class ProductCatalog:
    """Every product's releases (immutable). Build with :func:`load_products`."""

    releases: Mapping[str, tuple[ProductRelease, ...]]
    sha256: str
    source: str
    _by_version: Mapping[tuple[str, str], ProductRelease] = field(repr=False, compare=False)
    _public_by: Mapping[tuple[str, str], date] = field(repr=False, compare=False)

    def public_by(self, row: ProductRelease) -> date | None:
        """The day by which ``row`` was public: its own release date, or, when the vendor published
        none, the earliest release date of any later version (it shipped before them); ``None`` when
        neither is known."""
        return self._public_by.get((row.product, row.version))

    def lookup(self, product: str, version: str) -> ProductRelease | None:
        """The release row of ``product`` ``version`` (canonical form), or ``None``."""
        return self._by_version.get((product, version))

    def product_releases(self, product: str) -> tuple[ProductRelease, ...]:
        """A product's releases ordered by version."""
        return self.releases.get(product, ())

    @property
    def products(self) -> tuple[str, ...]:
        return tuple(self.releases)

    @property
    def version(self) -> str:
        """A short identification: row count and checksum prefix."""
        rows = sum(len(r) for r in self.releases.values())
        return f"products={len(self.releases)} rows={rows} sha256={self.sha256[:12]}"


# --------------------------------------------------------------------------------------------- check


def check_products_text(
    text: str, *, expect_product: str | None = None
) -> tuple[list[CatalogError], list[ProductRelease]]:
    """Validate one product CSV's text; return its problems (by line) and its valid rows."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return [CatalogError(1, "empty file: expected a header row")], []
    except csv.Error as exc:
        return [CatalogError(1, f"unreadable CSV header: {exc}")], []
    if tuple(header) != PRODUCT_COLUMNS:
        return [CatalogError(1, f"header must be exactly {','.join(PRODUCT_COLUMNS)}")], []
    errors: list[CatalogError] = []
    rows: list[ProductRelease] = []
    seen: dict[tuple[str, str], int] = {}
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(CatalogError(reader.line_num, f"unreadable CSV row: {exc}"))
            break
        if not fields or all(not f.strip() for f in fields):
            continue
        problems, row = _check_release(reader.line_num, fields, expect_product, seen)
        errors.extend(CatalogError(reader.line_num, p) for p in problems)
        if row is not None:
            rows.append(row)
    if not errors and not rows:
        errors.append(CatalogError(1, "no release rows"))
    return errors, rows


def _check_release(
    line: int, fields: list[str], expect: str | None, seen: dict[tuple[str, str], int]
) -> tuple[list[str], ProductRelease | None]:
    """Every check of one row; the row is kept only if it passes them all."""
    if len(fields) != len(PRODUCT_COLUMNS):
        return [f"expected {len(PRODUCT_COLUMNS)} fields, got {len(fields)}"], None
    product, version, released, eos, security, fixes, source, note = fields
    problems = [
        *_identity_problems(product, version, expect),
        *_date_problems("released", released),
        *_date_problems("end_of_support", eos),
        *_fact_problems(security, fixes, source),
    ]
    first = seen.get((product, version))
    if first is not None:
        problems.append(f"duplicate version {version} (first at line {first})")
    seen.setdefault((product, version), line)
    if problems:
        return problems, None
    return [], ProductRelease(
        product=product,
        version=version,
        key=version_key(version),
        released=parse_partial_date(released) if released else None,
        end_of_support=parse_partial_date(eos) if eos else None,
        security=security,
        fixes=tuple(f.strip() for f in fixes.split(";") if f.strip()),
        source=source,
        note=note,
        line=line,
    )


def _identity_problems(product: str, version: str, expect: str | None) -> list[str]:
    problems: list[str] = []
    if product not in PRODUCT_NAMES:
        problems.append(f"unknown product {product!r} (known: {', '.join(PRODUCT_NAMES)})")
    elif expect is not None and product != expect:
        problems.append(f"product {product!r} in the file of {expect!r}")
    if len(version) > MAX_VERSION_CHARS or not _VERSION.match(version):
        problems.append(f"bad version {version!r} (like 4.96.1, 9.0.1FP10 or 9.2.4 patch 1)")
    return problems


def _date_problems(column: str, text: str) -> list[str]:
    if text and parse_partial_date(text) is None:
        return [f"bad {column} {text!r} (expected YYYY-MM-DD, YYYY-MM, YYYY or empty)"]
    return []


def _fact_problems(security: str, fixes: str, source: str) -> list[str]:
    problems: list[str] = []
    if security not in SECURITY_VALUES:
        problems.append(f"bad security_release {security!r} (expected yes, no or unknown)")
    bad = [f for f in (x.strip() for x in fixes.split(";")) if f and not _CVE.match(f)]
    if bad:
        problems.append(f"bad fixes {', '.join(map(repr, bad))} (CVE ids separated by ';')")
    if not source.startswith(("https://", "http://")):
        problems.append(f"bad source {source!r} (a public URL)")
    return problems


def check_products_file(path: str | Path) -> list[CatalogError]:
    """Validate one product CSV file (named ``<product>.csv``); return its problems.

    Raises ``OSError``/``UnicodeDecodeError`` if the file cannot be read as UTF-8 text.
    """
    p = Path(path)
    expect = p.stem if p.stem in PRODUCT_NAMES else None
    errors, _rows = check_products_text(p.read_bytes().decode("utf-8"), expect_product=expect)
    return errors


# ---------------------------------------------------------------------------------------------- load


def _packaged_files() -> list[tuple[str, bytes]]:
    folder = resources.files("processors").joinpath("data", PRODUCTS_FOLDER)
    if not folder.is_dir():
        return []
    return sorted((f.name, f.read_bytes()) for f in folder.iterdir() if f.name.endswith(".csv"))


def _folder_files(folder: Path) -> list[tuple[str, bytes]]:
    return sorted((f.name, f.read_bytes()) for f in folder.iterdir() if f.suffix == ".csv" and f.is_file())


def build_products(files: list[tuple[str, bytes]], *, source: str = "<memory>") -> ProductCatalog:
    """Validate and index ``(file name, content)`` pairs; raise :class:`ProductCatalogError`."""
    digest = hashlib.sha256()
    by_product: dict[str, list[ProductRelease]] = {}
    for name, data in files:
        digest.update(name.encode() + b"\0" + data + b"\0")
        stem = name.removesuffix(".csv")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProductCatalogError(f"{source}/{name}", [CatalogError(1, f"not UTF-8 ({exc.reason})")]) from exc
        errors, rows = check_products_text(text, expect_product=stem if stem in PRODUCT_NAMES else None)
        if errors:
            raise ProductCatalogError(f"{source}/{name}", errors)
        for row in rows:
            by_product.setdefault(row.product, []).append(row)
    releases = {p: tuple(sorted(rows, key=lambda r: padded(r.key))) for p, rows in by_product.items()}
    index = {(r.product, r.version): r for rows in releases.values() for r in rows}
    return ProductCatalog(
        releases=MappingProxyType(releases),
        sha256=digest.hexdigest(),
        source=source,
        _by_version=MappingProxyType(index),
        _public_by=MappingProxyType(_public_dates(releases)),
    )


def _public_dates(releases: Mapping[str, tuple[ProductRelease, ...]]) -> dict[tuple[str, str], date]:
    """Each release's own date, else the earliest date of a later version (see ``public_by``)."""
    out: dict[tuple[str, str], date] = {}
    for product, rows in releases.items():
        earliest: date | None = None
        for row in reversed(rows):
            if row.released is not None and (earliest is None or row.released < earliest):
                earliest = row.released
            when = row.released or earliest
            if when is not None:
                out[(product, row.version)] = when
    return out


def load_products(folder: str | Path | None = None) -> ProductCatalog:
    """Load the packaged product files (``folder=None``) or every ``*.csv`` of ``folder``.

    Raises :class:`ProductCatalogError` for invalid content and ``OSError`` for an unreadable folder.
    """
    if folder is None:
        return build_products(_packaged_files(), source=f"processors/data/{PRODUCTS_FOLDER}")
    return build_products(_folder_files(Path(folder)), source=str(folder))
