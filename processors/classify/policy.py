"""Classification policy: the ``[classification]`` and ``[products]`` tables of ``processors/data/policy.toml``.

Only these tables are read (``[products]`` by :mod:`processors.classify.product_policy`); other
top-level tables in the same file belong to other components and are ignored. Values are
validated by hand so that every error names its key, e.g.
``classification.grace_days: must be an integer 0..365, got -3``. The scalar defaults below equal
the values in the packaged file (a test keeps them in step); the file's comments document each key.
Baselines have no code default: without a ``baselines`` array no floor applies.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from processors.classify.catalog import KINDS, PRODUCTS, BuildTuple, format_short, parse_build
from processors.classify.product_policy import DEFAULT_PRODUCT_POLICIES, ProductPolicy, read_products_table
from processors.classify.product_policy import TABLE as PRODUCTS_TABLE
from processors.errors import PatchgateError

POLICY_FILE = "policy.toml"
TABLE = "classification"

_EMPTY: Mapping[str, frozenset[str]] = MappingProxyType({})


@dataclass(frozen=True, kw_only=True, slots=True)
class Baseline:
    """An explicit floor: builds of ``product``/``cu`` below ``min_build`` are behind from ``since``."""

    product: str
    cu: str
    min_build: BuildTuple
    since: date
    note: str = ""

    @property
    def min_short(self) -> str:
        return format_short(self.min_build)


@dataclass(frozen=True, kw_only=True, slots=True)
class ClassificationPolicy:
    """Validated classification policy (immutable)."""

    grace_days: int = 30
    security_kinds: frozenset[str] = frozenset({"SU", "RU"})
    esu: bool = False
    upgrade_targets: tuple[str, ...] = ("Exchange Server SE", "Exchange Server 2019", "Exchange Server 2016")
    cloud_host_suffixes: tuple[str, ...] = (".outlook.com", ".office365.us", ".outlook.cn")
    serviced_cus: Mapping[str, frozenset[str]] = field(default_factory=lambda: _EMPTY)
    baselines: tuple[Baseline, ...] = ()
    #: the ``[products.<id>]`` tables: per-product enforcement, grace period and release lines
    products: Mapping[str, ProductPolicy] = field(default_factory=lambda: DEFAULT_PRODUCT_POLICIES)
    source: str = "<defaults>"

    def baseline_for(self, product: str, cu: str, day: date) -> Baseline | None:
        """The baseline in force for ``product``/``cu`` on ``day`` (latest ``from`` <= day)."""
        best: Baseline | None = None
        for b in self.baselines:
            if b.product != product or b.cu != cu or b.since > day:
                continue
            if best is None or b.since >= best.since:
                best = b
        return best


class PolicyError(PatchgateError, ValueError):
    """Invalid policy. ``errors`` lists every problem as ``classification.<key>: ...``."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))


_KEYS = frozenset(
    {
        "grace_days",
        "security_kinds",
        "esu",
        "upgrade_targets",
        "cloud_host_suffixes",
        "serviced_cus",
        "baselines",
    }
)
_BASELINE_KEYS = frozenset({"product", "cu", "min_build", "from", "note"})


def _str_list(key: str, value: object, errors: list[str]) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(f"{TABLE}.{key}: must be a list of strings, got {value!r}")
        return None
    return list(value)


def _as_date(value: object) -> date | None:
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def policy_from_mapping(table: Mapping[str, Any], *, source: str = "<memory>") -> ClassificationPolicy:
    """Validate a ``[classification]`` table (already parsed) and build the policy.

    Every key present is checked by its reader in ``_READERS``; all problems are collected, in the
    readers' order, and raised together as one :class:`PolicyError`.
    """
    if not isinstance(table, Mapping):
        raise PolicyError(source, [f"{TABLE}: must be a table, got {type(table).__name__}"])
    errors = [f"{TABLE}.{key}: unknown key (known: {', '.join(sorted(_KEYS))})" for key in sorted(set(table) - _KEYS)]
    kwargs: dict[str, Any] = {}
    for key, read in _READERS:
        if key in table:
            value = read(table[key], errors)
            if value is not None:
                kwargs[key] = value
    if errors:
        raise PolicyError(source, errors)
    return ClassificationPolicy(**kwargs, source=source)


def _read_grace_days(value: object, errors: list[str]) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 365:
        return value
    errors.append(f"{TABLE}.grace_days: must be an integer 0..365, got {value!r}")
    return None


def _read_esu(value: object, errors: list[str]) -> bool | None:
    if not isinstance(value, bool):
        errors.append(f"{TABLE}.esu: must be true or false, got {value!r}")
        return None
    return value


def _read_security_kinds(value: object, errors: list[str]) -> frozenset[str] | None:
    kinds = _str_list("security_kinds", value, errors)
    if kinds is None:
        return None
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        errors.append(
            f"{TABLE}.security_kinds: unknown kind(s) {', '.join(map(repr, bad))} "
            f"(allowed: {', '.join(sorted(KINDS))})"
        )
        return None
    if not kinds:
        errors.append(f"{TABLE}.security_kinds: must not be empty")
        return None
    return frozenset(kinds)


def _read_upgrade_targets(value: object, errors: list[str]) -> tuple[str, ...] | None:
    targets = _str_list("upgrade_targets", value, errors)
    if targets is None:
        return None
    bad = [t for t in targets if t not in PRODUCTS]
    if bad:
        errors.append(f"{TABLE}.upgrade_targets: unknown product(s) {', '.join(map(repr, bad))}")
        return None
    return tuple(targets)


def _read_cloud_host_suffixes(value: object, errors: list[str]) -> tuple[str, ...] | None:
    suffixes = _str_list("cloud_host_suffixes", value, errors)
    if suffixes is None:
        return None
    bad = [s for s in suffixes if not s.startswith(".") or len(s) < 3 or any(c.isspace() for c in s)]
    if bad:
        errors.append(
            f"{TABLE}.cloud_host_suffixes: each must start with '.' and be a domain, got {', '.join(map(repr, bad))}"
        )
        return None
    return tuple(s.lower() for s in suffixes)


def _read_serviced_cus(value: object, errors: list[str]) -> Mapping[str, frozenset[str]] | None:
    if not isinstance(value, Mapping):
        errors.append(f"{TABLE}.serviced_cus: must be a table of product = [CU, ...], got {value!r}")
        return None
    serviced: dict[str, frozenset[str]] = {}
    for product, cus in value.items():
        if product not in PRODUCTS:
            errors.append(f"{TABLE}.serviced_cus: unknown product {product!r}")
            continue
        lst = _str_list(f"serviced_cus.{product!r}", cus, errors)
        if lst is not None:
            serviced[product] = frozenset(lst)
    return MappingProxyType(serviced)


def _read_baselines(value: object, errors: list[str]) -> tuple[Baseline, ...] | None:
    if not isinstance(value, list):
        errors.append(f"{TABLE}.baselines: must be an array of tables, got {value!r}")
        return None
    baselines = (_read_baseline(f"{TABLE}.baselines[{i}]", entry, errors) for i, entry in enumerate(value))
    return tuple(b for b in baselines if b is not None)


def _read_baseline(where: str, entry: object, errors: list[str]) -> Baseline | None:
    """One ``[[classification.baselines]]`` entry; ``None`` if it is invalid (``errors`` says why)."""
    if not isinstance(entry, Mapping):
        errors.append(f"{where}: must be a table, got {entry!r}")
        return None
    for key in sorted(set(entry) - _BASELINE_KEYS):
        errors.append(f"{where}.{key}: unknown key")
    for key in ("product", "cu", "min_build", "from"):
        if key not in entry:
            errors.append(f"{where}.{key}: missing")
    product = _baseline_product(where, entry.get("product"), errors)
    cu = _baseline_cu(where, entry.get("cu"), errors)
    build = _baseline_min_build(where, entry.get("min_build"), errors)
    since = _baseline_from(where, entry, errors)
    note = entry.get("note", "")
    if not isinstance(note, str):
        errors.append(f"{where}.note: must be a string, got {note!r}")
        note = ""
    if product is None or cu is None or build is None or since is None:
        return None
    return Baseline(product=product, cu=cu, min_build=build, since=since, note=note)


def _baseline_product(where: str, product: object, errors: list[str]) -> str | None:
    if product is not None and product not in PRODUCTS:
        errors.append(f"{where}.product: unknown product {product!r}")
    return product if isinstance(product, str) and product in PRODUCTS else None


def _baseline_cu(where: str, cu: object, errors: list[str]) -> str | None:
    if cu is not None and (not isinstance(cu, str) or not cu.strip()):
        errors.append(f"{where}.cu: must be a non-empty string, got {cu!r}")
    return cu if isinstance(cu, str) and cu.strip() else None


def _baseline_min_build(where: str, raw_build: object, errors: list[str]) -> BuildTuple | None:
    build = parse_build(raw_build) if isinstance(raw_build, str) else None
    if raw_build is not None and build is None:
        errors.append(f"{where}.min_build: must be a build like 15.1.2507.61 or 15.01.2507.061, got {raw_build!r}")
    return build


def _baseline_from(where: str, entry: Mapping[str, Any], errors: list[str]) -> date | None:
    if "from" not in entry:
        return None
    since = _as_date(entry["from"])
    if since is None:
        errors.append(f"{where}.from: must be a date (YYYY-MM-DD), got {entry['from']!r}")
    return since


#: One reader per key of the table, in the order their errors are reported.
_READERS: tuple[tuple[str, Callable[[object, list[str]], Any]], ...] = (
    ("grace_days", _read_grace_days),
    ("esu", _read_esu),
    ("security_kinds", _read_security_kinds),
    ("upgrade_targets", _read_upgrade_targets),
    ("cloud_host_suffixes", _read_cloud_host_suffixes),
    ("serviced_cus", _read_serviced_cus),
    ("baselines", _read_baselines),
)


def parse_policy_text(text: str, *, source: str = "<memory>") -> ClassificationPolicy:
    """Parse TOML text and validate its ``[classification]`` and ``[products]`` tables (absent = defaults)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, [f"invalid TOML: {exc}"]) from exc
    return policy_from_document(data, source=source)


def policy_from_document(document: Mapping[str, Any], *, source: str = "<memory>") -> ClassificationPolicy:
    """The classification policy of a parsed policy file: its ``[classification]`` and ``[products]``
    tables, validated (other tables belong to other components)."""
    policy = policy_from_mapping(document.get(TABLE, {}), source=source)
    errors: list[str] = []
    products = read_products_table(document.get(PRODUCTS_TABLE, {}), errors)
    if errors:
        raise PolicyError(source, errors)
    return replace(policy, products=products)


def load_policy(path: str | Path | None = None) -> ClassificationPolicy:
    """Load the packaged ``processors/data/policy.toml`` (``path=None``) or another file.

    Raises :class:`PolicyError` for invalid content and ``OSError`` for an unreadable file.
    """
    if path is None:
        text = resources.files("processors").joinpath("data", POLICY_FILE).read_text("utf-8")
        source = f"processors/data/{POLICY_FILE}"
    else:
        text = Path(path).read_text("utf-8")
        source = str(path)
    return parse_policy_text(text, source=source)
