"""What one benchmark measured, written for ``python -m benchmarks --json FILE`` to collect.

A benchmark script builds :class:`Measurement` records through a :class:`Results` and calls
:meth:`Results.write` once at the end. The runner (:mod:`benchmarks.__main__`) names the file in the
environment variable ``PATCHGATE_BENCH_RESULTS`` of each benchmark's process; run by hand (no such
variable), a benchmark writes nothing. The file holds one JSON object, ``{"benchmark": name,
"measurements": [...]}``; every measurement is an object as ``schemas/bench-summary.v1.json``
describes under ``$defs/measurement``:

* ``value`` and ``unit``; ``baseline_name`` and ``baseline_value`` for a baseline measured in the
  same run (else ``null``), and ``ratio`` = value / baseline value;
* ``target`` (e.g. ``">= 0.6"``), ``target_of`` (``"ratio"`` or ``"value"``: which number the target
  is about) and ``met`` (``true``/``false``, ``null`` without a target).

:func:`write_named_results` adapts a benchmark that keeps its results in a dict (name -> rate, or
name -> ``{"value", "baseline", "ratio", "unit"}``).
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

#: The environment variable naming the file a benchmark writes its measurements to.
RESULTS_ENV = "PATCHGATE_BENCH_RESULTS"

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
}


def target_met(target: str, number: float) -> bool:
    """Whether ``number`` meets ``target`` (an operator, a space and a number: ``">= 0.6"``)."""
    op, _, bound = target.partition(" ")
    return _COMPARE[op](number, float(bound))


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """One number a benchmark measured, with the baseline it is compared to (see the module docstring)."""

    name: str
    value: float | None
    unit: str
    baseline_name: str | None = None
    baseline_value: float | None = None
    target: str | None = None
    target_of: str | None = None  # "ratio" | "value"; defaults to "ratio" with a baseline, else "value"
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.target is not None:
            op, _, bound = self.target.partition(" ")
            if op not in _COMPARE or not _is_number(bound):
                raise ValueError(f"target {self.target!r}: expected an operator (>=, <=, >, <), a space, a number")
            if self.target_of is None:
                object.__setattr__(self, "target_of", "ratio" if self.baseline_name is not None else "value")

    @property
    def ratio(self) -> float | None:
        """value / baseline value, when both were measured (and the baseline is not zero)."""
        if self.value is None or self.baseline_value is None or self.baseline_value == 0:
            return None
        return self.value / self.baseline_value

    @property
    def met(self) -> bool | None:
        """Whether the target is met; ``None`` without a target or without the number it is about."""
        if self.target is None:
            return None
        number = self.ratio if self.target_of == "ratio" else self.value
        return None if number is None else target_met(self.target, number)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "value": _finite(self.value), "unit": self.unit,
            "baseline_name": self.baseline_name, "baseline_value": _finite(self.baseline_value),
            "ratio": _finite(self.ratio), "target": self.target, "target_of": self.target_of, "met": self.met,
            "notes": list(self.notes),
        }


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _finite(number: float | None) -> float | None:
    return number if number is not None and math.isfinite(number) else None


class Results:
    """The measurements of one benchmark run, written once at its end."""

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self.measurements: list[Measurement] = []

    def add(self, **fields: Any) -> Measurement:
        """Record one :class:`Measurement` (keyword arguments as its fields) and return it."""
        measurement = Measurement(**fields)
        self.measurements.append(measurement)
        return measurement

    def to_json_dict(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "measurements": [m.to_json_dict() for m in self.measurements]}

    def write(self, path: str | Path | None = None) -> Path | None:
        """Write to ``path``, else to the file ``PATCHGATE_BENCH_RESULTS`` names; nothing without either."""
        target = path if path is not None else os.environ.get(RESULTS_ENV)
        if not target:
            return None
        target = Path(target)
        target.write_bytes(orjson.dumps(self.to_json_dict(), option=orjson.OPT_INDENT_2))
        return target


def write_named_results(benchmark: str, results: Mapping[str, Any], *, unit: str = "records/s",
                        targets: Mapping[str, str] | None = None) -> Path | None:
    """Write a benchmark's ``results`` dict as measurements (see :class:`Results`).

    A value is either a number (``unit`` applies, no baseline) or a mapping with ``value`` and
    optionally ``unit``, ``baseline`` (the baseline's name, or its value), ``baseline_value``,
    ``ratio`` (recorded as a measurement of its own when no baseline value is known) and ``target``.
    """
    out = Results(benchmark)
    for name, result in results.items():
        target = (targets or {}).get(name)
        if not isinstance(result, Mapping):
            out.add(name=name, value=float(result), unit=unit, target=target)
            continue
        baseline = result.get("baseline")
        baseline_name = baseline if isinstance(baseline, str) else ("baseline" if baseline is not None else None)
        baseline_value = result.get("baseline_value", baseline if not isinstance(baseline, str) else None)
        measurement = out.add(
            name=name, value=result.get("value"), unit=result.get("unit", unit), baseline_name=baseline_name,
            baseline_value=baseline_value, target=result.get("target", target),
        )
        given_ratio = result.get("ratio")
        if measurement.ratio is None and given_ratio is not None:  # a ratio against a baseline not handed over
            out.add(name=f"{name}: ratio", value=float(given_ratio), unit="ratio",
                    notes=(f"against {baseline_name or 'a baseline'} of the same run",))
    return out.write()
