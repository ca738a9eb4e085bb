"""Per-product policy: the ``[products.<id>]`` tables of ``processors/data/policy.toml``.

Each table says whether a product's vulnerable versions are enforced or reported only, its grace
period, how many leading version numbers form a release line, and a note for the report. A product
without a table gets :data:`DEFAULT_PRODUCT_POLICIES` (the values the packaged file writes out).
Errors name their key: ``products.exim.grace_days: must be an integer 0..365, got -3``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from processors.classify.products import PRODUCT_NAMES

TABLE = "products"
DISTRIBUTION_NOTE = (
    "Report only: Linux distributions (Debian, Ubuntu, RHEL) patch {name} without changing its version "
    "string, so a version does not prove the patch level."
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ProductPolicy:
    """How one product's versions are judged and whether a vulnerable one is enforced."""

    enforce: bool
    grace_days: int = 30
    #: leading version numbers that form a release line (``behind`` compares within a line)
    line_parts: int = 1
    note: str = ""


def _distribution_built(name: str) -> ProductPolicy:
    return ProductPolicy(enforce=False, note=DISTRIBUTION_NOTE.format(name=name))


DEFAULT_PRODUCT_POLICIES: Mapping[str, ProductPolicy] = MappingProxyType(
    {
        "exim": _distribution_built("Exim"),
        "sendmail": _distribution_built("Sendmail"),
        "domino": ProductPolicy(enforce=True, line_parts=2),
        "smtpsvc": ProductPolicy(
            enforce=True,
            line_parts=3,
            note="The version is the Windows build: only an out-of-support Windows Server is judged.",
        ),
        "mdaemon": ProductPolicy(enforce=True),
        "kerio": ProductPolicy(enforce=True),
        "communigate": ProductPolicy(enforce=True, line_parts=2),
        "icewarp": ProductPolicy(enforce=True),
    }
)

_KEYS = frozenset({"enforce", "grace_days", "line_parts", "note"})


def read_products_table(table: object, errors: list[str]) -> Mapping[str, ProductPolicy]:
    """Validate the ``[products]`` table: one sub-table per known product id, every key checked.

    Products the table does not name keep their defaults. Problems are appended to ``errors``.
    """
    out = dict(DEFAULT_PRODUCT_POLICIES)
    if not isinstance(table, Mapping):
        errors.append(f"{TABLE}: must be a table of [products.<id>] tables, got {table!r}")
        return MappingProxyType(out)
    for product, entry in table.items():
        where = f"{TABLE}.{product}"
        if product not in PRODUCT_NAMES:
            errors.append(f"{where}: unknown product (known: {', '.join(PRODUCT_NAMES)})")
            continue
        policy = _read_product(where, entry, DEFAULT_PRODUCT_POLICIES[product], errors)
        if policy is not None:
            out[product] = policy
    return MappingProxyType(out)


def _read_product(where: str, entry: object, default: ProductPolicy, errors: list[str]) -> ProductPolicy | None:
    if not isinstance(entry, Mapping):
        errors.append(f"{where}: must be a table, got {entry!r}")
        return None
    before = len(errors)
    known = ", ".join(sorted(_KEYS))
    errors.extend(f"{where}.{key}: unknown key (known: {known})" for key in sorted(set(entry) - _KEYS))
    enforce = entry.get("enforce", default.enforce)
    if not isinstance(enforce, bool):
        errors.append(f"{where}.enforce: must be true or false, got {enforce!r}")
    grace = entry.get("grace_days", default.grace_days)
    if not _int_in(grace, 0, 365):
        errors.append(f"{where}.grace_days: must be an integer 0..365, got {grace!r}")
    line_parts = entry.get("line_parts", default.line_parts)
    if not _int_in(line_parts, 1, 4):
        errors.append(f"{where}.line_parts: must be an integer 1..4, got {line_parts!r}")
    note = entry.get("note", default.note)
    if not isinstance(note, str) or len(note) > 500:
        errors.append(f"{where}.note: must be a string of at most 500 characters, got {note!r}")
    if len(errors) > before:
        return None
    return ProductPolicy(enforce=enforce, grace_days=grace, line_parts=line_parts, note=note)


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
