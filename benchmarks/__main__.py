"""``make bench``: run every benchmark, one after the other, each in its own process.

Each prints its own numbers and the side-by-side baseline measured in the same run; at the end the
runner prints every measurement with its baseline and ratio again, in one table. ``--json FILE``
(``make bench JSON=FILE``) also writes them, with a description of the machine, as one JSON
document (the contract: ``schemas/bench-summary.v1.json``; each benchmark hands its measurements
over in a file, see :mod:`benchmarks.results`). ``--quick`` (``make bench-quick``) runs each with
small sizes: the ratios are rough, the point is that every benchmark runs. The exit code is
non-zero when any benchmark failed to run. All temporary files and processes of the run are gone
when it ends, also after Ctrl-C (:mod:`benchmarks.run_scope`).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.results import RESULTS_ENV  # noqa: E402
from benchmarks.run_scope import run_benchmark  # noqa: E402

BENCHMARKS = ["bench_classify.py", "bench_edge.py", "bench_postfix.py", "bench_worker.py", "bench_whatif.py"]
SUMMARY_SCHEMA = "patchgate.bench-summary/1"
#: how long a benchmark may take to stop what it started once interrupted
INTERRUPT_GRACE = 60.0


@dataclass
class Outcome:
    """How one benchmark's process ended and what it handed over."""

    name: str
    status: str  # ok | failed | interrupted
    exit_code: int | None
    seconds: float
    results_error: str | None = None
    measurements: list[dict[str, Any]] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "exit_code": self.exit_code, "seconds": self.seconds,
                "results_error": self.results_error, "measurements": self.measurements}


def run_one(script: Path, quick: bool) -> Outcome:
    """Run one benchmark script in its own process; read the measurements it wrote."""
    handover = Path(tempfile.mkdtemp(prefix="results-")) / f"{script.stem}.json"
    env = {**os.environ, RESULTS_ENV: str(handover)}
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, str(script), *(["--quick"] if quick else [])], env=env)
    try:
        code = child.wait()
    except KeyboardInterrupt:
        # A Ctrl-C in the terminal reached the child too; a SIGTERM sent to this process did not.
        child.send_signal(signal.SIGINT)
        try:
            child.wait(INTERRUPT_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    outcome = Outcome(script.name, "ok" if code == 0 else "failed", code, round(time.monotonic() - started, 3))
    if handover.exists():
        outcome.measurements, outcome.results_error = read_measurements(handover)
        if outcome.results_error is not None:
            outcome.status = "failed"
    return outcome


def read_measurements(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The measurements a benchmark wrote, or why they cannot be used (one line)."""
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as error:
        return [], f"{path.name}: unreadable: {error}"
    measurements = document.get("measurements") if isinstance(document, dict) else None
    if not isinstance(measurements, list) or not all(isinstance(m, dict) for m in measurements):
        return [], f"{path.name}: expected an object with a list of measurements"
    return measurements, None


def machine(note: str | None) -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "load_average_at_start": load,
        "note": note,
    }


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The ``model name`` of the first CPU in ``/proc/cpuinfo`` (``None`` where there is none)."""
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name":
            return value.strip() or None
    return None


def summary(outcomes: list[Outcome], *, quick: bool, started: datetime, machine_info: dict[str, Any]) -> dict[str, Any]:
    """The JSON document of ``schemas/bench-summary.v1.json``."""
    return {
        "schema": SUMMARY_SCHEMA,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "quick": quick,
        "ok": all(o.status == "ok" for o in outcomes),
        "machine": machine_info,
        "benchmarks": [o.to_json_dict() for o in outcomes],
    }


def write_summary(document: dict[str, Any], path: Path) -> None:
    """Write ``document`` to ``path`` whole or not at all (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    partial.replace(path)


def print_table(outcomes: list[Outcome]) -> None:
    """Every measurement with its baseline from the same run, its ratio and its target."""
    print("\n===== summary (ratios against baselines measured in the same run) =====")
    for outcome in outcomes:
        note = outcome.results_error or ("" if outcome.measurements else "no measurements handed over")
        print(f"{outcome.name}: {outcome.status}" + (f" ({note})" if note else ""))
        for m in outcome.measurements:
            print("  " + measurement_line(m))


def measurement_line(m: dict[str, Any]) -> str:
    value = m.get("value")
    text = f"{m.get('name')}: {_number(value)} {m.get('unit')}"
    if m.get("baseline_name") is not None:
        text += f" | baseline {m['baseline_name']}: {_number(m.get('baseline_value'))}"
        text += f" | ratio {_number(m.get('ratio'))}"
    if m.get("target") is not None:
        met = {True: "met", False: "NOT met", None: "not measured"}[m.get("met")]
        text += f" | target {m.get('target_of')} {m['target']}: {met}"
    return text


def _number(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def run_all(scripts: list[Path], quick: bool, json_file: Path | None = None, note: str | None = None) -> int:
    """Run ``scripts`` one after the other; print the table, write ``json_file``; 1 if any failed."""
    started, machine_info = datetime.now(UTC), machine(note)
    outcomes: list[Outcome] = []
    try:
        for script in scripts:
            print(f"\n===== {script.name}{' (quick)' if quick else ''} =====", flush=True)
            outcomes.append(run_one(script, quick))
    except KeyboardInterrupt:
        outcomes.append(Outcome(scripts[len(outcomes)].name, "interrupted", None, 0.0))
        if json_file is not None:
            write_summary(summary(outcomes, quick=quick, started=started, machine_info=machine_info), json_file)
        raise
    print_table(outcomes)
    if json_file is not None:
        write_summary(summary(outcomes, quick=quick, started=started, machine_info=machine_info), json_file)
        print(f"\nsummary written to {json_file}")
    failed = [o.name for o in outcomes if o.status != "ok"]
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: every benchmark in a few minutes")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write every measurement and the machine as JSON (schemas/bench-summary.v1.json)")
    parser.add_argument("--machine-note", metavar="TEXT",
                        help="a word on the machine for the JSON, e.g. '2-core shared VM'")
    parser.add_argument("names", nargs="*", metavar="BENCHMARK",
                        help=f"only these ({', '.join(BENCHMARKS)}); all by default")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)} (there are {', '.join(BENCHMARKS)})")
    scripts = [HERE / name for name in (args.names or BENCHMARKS)]
    json_file = args.json.resolve() if args.json is not None else None  # before the run scope changes TMPDIR
    return run_benchmark("benchmarks", lambda: run_all(scripts, args.quick, json_file, args.machine_note))


if __name__ == "__main__":
    sys.exit(main())
