"""Classification policy: the ``[classification]`` table of ``processors/data/policy.toml``.

Only that table is read; other top-level tables in the same file belong to other components and are
ignored. Values are validated by hand so that every error names its key, e.g.
``classification.grace_days: must be an integer 0..365, got -3``. The scalar defaults below equal
the values in the packaged file (a test keeps them in step); the file's comments document each key.
Baselines have no code default: without a ``baselines`` array no floor applies.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from processors.classify.catalog import KINDS, PRODUCTS, BuildTuple, format_short, parse_build

POLICY_FILE = "policy.toml"
TABLE = "classification"

_EMPTY: Mapping[str, frozenset[str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class ClassificationPolicy:
    """Validated classification policy (immutable)."""

    grace_days: int = 30
    security_kinds: frozenset[str] = frozenset({"SU", "RU"})
    esu: bool = False
    upgrade_targets: tuple[str, ...] = ("Exchange Server SE", "Exchange Server 2019", "Exchange Server 2016")
    cloud_host_suffixes: tuple[str, ...] = (".outlook.com", ".office365.us", ".outlook.cn")
    serviced_cus: Mapping[str, frozenset[str]] = field(default_factory=lambda: _EMPTY)
    baselines: tuple[Baseline, ...] = ()
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


class PolicyError(ValueError):
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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    """Validate a ``[classification]`` table (already parsed) and build the policy."""
    errors: list[str] = []
    if not isinstance(table, Mapping):
        raise PolicyError(source, [f"{TABLE}: must be a table, got {type(table).__name__}"])
    for key in sorted(set(table) - _KEYS):
        errors.append(f"{TABLE}.{key}: unknown key (known: {', '.join(sorted(_KEYS))})")
    defaults = ClassificationPolicy()
    kwargs: dict[str, Any] = {}

    if "grace_days" in table:
        v = table["grace_days"]
        if not _is_int(v) or not 0 <= v <= 365:
            errors.append(f"{TABLE}.grace_days: must be an integer 0..365, got {v!r}")
        else:
            kwargs["grace_days"] = v

    if "esu" in table:
        v = table["esu"]
        if not isinstance(v, bool):
            errors.append(f"{TABLE}.esu: must be true or false, got {v!r}")
        else:
            kwargs["esu"] = v

    if "security_kinds" in table:
        kinds = _str_list("security_kinds", table["security_kinds"], errors)
        if kinds is not None:
            bad = [k for k in kinds if k not in KINDS]
            if bad:
                errors.append(
                    f"{TABLE}.security_kinds: unknown kind(s) {', '.join(map(repr, bad))} "
                    f"(allowed: {', '.join(sorted(KINDS))})"
                )
            elif not kinds:
                errors.append(f"{TABLE}.security_kinds: must not be empty")
            else:
                kwargs["security_kinds"] = frozenset(kinds)

    if "upgrade_targets" in table:
        targets = _str_list("upgrade_targets", table["upgrade_targets"], errors)
        if targets is not None:
            bad = [t for t in targets if t not in PRODUCTS]
            if bad:
                errors.append(f"{TABLE}.upgrade_targets: unknown product(s) {', '.join(map(repr, bad))}")
            else:
                kwargs["upgrade_targets"] = tuple(targets)

    if "cloud_host_suffixes" in table:
        suffixes = _str_list("cloud_host_suffixes", table["cloud_host_suffixes"], errors)
        if suffixes is not None:
            bad = [s for s in suffixes if not s.startswith(".") or len(s) < 3 or any(c.isspace() for c in s)]
            if bad:
                errors.append(
                    f"{TABLE}.cloud_host_suffixes: each must start with '.' and be a domain, "
                    f"got {', '.join(map(repr, bad))}"
                )
            else:
                kwargs["cloud_host_suffixes"] = tuple(s.lower() for s in suffixes)

    if "serviced_cus" in table:
        v = table["serviced_cus"]
        if not isinstance(v, Mapping):
            errors.append(f"{TABLE}.serviced_cus: must be a table of product = [CU, ...], got {v!r}")
        else:
            serviced: dict[str, frozenset[str]] = {}
            for product, cus in v.items():
                if product not in PRODUCTS:
                    errors.append(f"{TABLE}.serviced_cus: unknown product {product!r}")
                    continue
                lst = _str_list(f"serviced_cus.{product!r}", cus, errors)
                if lst is not None:
                    serviced[product] = frozenset(lst)
            kwargs["serviced_cus"] = MappingProxyType(serviced)

    if "baselines" in table:
        v = table["baselines"]
        if not isinstance(v, list):
            errors.append(f"{TABLE}.baselines: must be an array of tables, got {v!r}")
        else:
            baselines: list[Baseline] = []
            for i, entry in enumerate(v):
                where = f"{TABLE}.baselines[{i}]"
                if not isinstance(entry, Mapping):
                    errors.append(f"{where}: must be a table, got {entry!r}")
                    continue
                for key in sorted(set(entry) - _BASELINE_KEYS):
                    errors.append(f"{where}.{key}: unknown key")
                for key in ("product", "cu", "min_build", "from"):
                    if key not in entry:
                        errors.append(f"{where}.{key}: missing")
                product = entry.get("product")
                if product is not None and product not in PRODUCTS:
                    errors.append(f"{where}.product: unknown product {product!r}")
                cu = entry.get("cu")
                if cu is not None and (not isinstance(cu, str) or not cu.strip()):
                    errors.append(f"{where}.cu: must be a non-empty string, got {cu!r}")
                raw_build = entry.get("min_build")
                build = parse_build(raw_build) if isinstance(raw_build, str) else None
                if raw_build is not None and build is None:
                    errors.append(
                        f"{where}.min_build: must be a build like 15.1.2507.61 or 15.01.2507.061, got {raw_build!r}"
                    )
                since = _as_date(entry["from"]) if "from" in entry else None
                if "from" in entry and since is None:
                    errors.append(f"{where}.from: must be a date (YYYY-MM-DD), got {entry['from']!r}")
                note = entry.get("note", "")
                if not isinstance(note, str):
                    errors.append(f"{where}.note: must be a string, got {note!r}")
                    note = ""
                if (
                    isinstance(product, str)
                    and product in PRODUCTS
                    and isinstance(cu, str)
                    and cu.strip()
                    and build is not None
                    and since is not None
                ):
                    baselines.append(Baseline(product, cu, build, since, note))
            kwargs["baselines"] = tuple(baselines)

    if errors:
        raise PolicyError(source, errors)
    return ClassificationPolicy(**{**_defaults_dict(defaults), **kwargs, "source": source})


def _defaults_dict(p: ClassificationPolicy) -> dict[str, Any]:
    return {name: getattr(p, name) for name in ClassificationPolicy.__dataclass_fields__}


def parse_policy_text(text: str, *, source: str = "<memory>") -> ClassificationPolicy:
    """Parse TOML text and validate its ``[classification]`` table (absent table = defaults)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, [f"invalid TOML: {exc}"]) from exc
    table = data.get(TABLE, {})
    return policy_from_mapping(table, source=source)


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
