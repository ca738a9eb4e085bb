"""``python -m benchmarks --json FILE``: every benchmark's measurements and the machine in one document
that matches ``schemas/bench-summary.v1.json``; a failing benchmark is recorded as failed and makes the
run's exit code non-zero. Run on small fake benchmark scripts (the real ones need root and minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from benchmarks.__main__ import cpu_model, run_all
from benchmarks.results import Measurement, Results, target_met, write_named_results
from benchmarks.run_scope import run_benchmark
from processors.contracts import schemas_dir

ROOT = Path(__file__).resolve().parent.parent
FAKE = """\
import sys
sys.path.insert(0, {root!r})
from benchmarks.results import Results

results = Results({name!r})
{body}
"""


def fake_bench(folder: Path, name: str, body: str) -> Path:
    script = folder / name
    script.write_text(FAKE.format(root=str(ROOT), name=script.stem, body=body))
    return script


def validate(document: dict[str, Any]) -> None:
    schema = orjson.loads((schemas_dir() / "bench-summary.v1.json").read_bytes())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    validator.validate(document)


def test_a_run_writes_every_measurement_and_the_machine(tmp_path: Path) -> None:
    fast = fake_bench(tmp_path, "bench_fast.py", """
results.add(name="thing, hop cache off", value=60.0, unit="things/s", baseline_name="one regex",
            baseline_value=100.0, target=">= 0.6", notes=(" ".join(sys.argv[1:]),))
results.add(name="decide", value=800.0, unit="ns", target="<= 5000")
results.add(name="slow thing", value=50.0, unit="things/s", baseline_name="one regex", baseline_value=100.0,
            target=">= 0.6")
results.write()
""")
    silent = fake_bench(tmp_path, "bench_silent.py", "print('measures nothing it hands over')")
    out = tmp_path / "out" / "summary.json"
    assert run_benchmark("benchmarks", lambda: run_all([fast, silent], True, out, "2-core shared VM")) == 0

    document = orjson.loads(out.read_bytes())
    validate(document)
    assert document["schema"] == "patchgate.bench-summary/1" and document["ok"] is True and document["quick"] is True
    machine = document["machine"]
    assert machine["cpu_count"] == os.cpu_count() and machine["note"] == "2-core shared VM"
    assert machine["python"].endswith(".".join(map(str, sys.version_info[:3])))
    fast_run, silent_run = document["benchmarks"]
    assert (fast_run["name"], fast_run["status"], fast_run["exit_code"]) == ("bench_fast.py", "ok", 0)
    ratio, decide, slow = fast_run["measurements"]
    assert (ratio["ratio"], ratio["target_of"], ratio["met"], ratio["notes"]) == (0.6, "ratio", True, ["--quick"])
    assert (decide["ratio"], decide["target_of"], decide["met"]) == (None, "value", True)
    assert (slow["ratio"], slow["met"]) == (0.5, False)
    assert (silent_run["status"], silent_run["measurements"], silent_run["results_error"]) == ("ok", [], None)


def test_a_failing_benchmark_is_recorded_and_the_exit_code_is_not_zero(tmp_path: Path) -> None:
    crashes = fake_bench(tmp_path, "bench_crash.py", """
results.add(name="before the crash", value=1.0, unit="things/s")
results.write()
raise SystemExit(3)
""")
    garbled = fake_bench(tmp_path, "bench_garbled.py", """
import os
open(os.environ["PATCHGATE_BENCH_RESULTS"], "w").write("[not json")
""")
    fine = fake_bench(tmp_path, "bench_fine.py", "results.add(name='x', value=2.0, unit='s'); results.write()")
    out = tmp_path / "summary.json"
    assert run_benchmark("benchmarks", lambda: run_all([crashes, garbled, fine], False, out)) == 1

    document = orjson.loads(out.read_bytes())
    validate(document)
    assert document["ok"] is False and document["quick"] is False
    crashed, unreadable, ran = document["benchmarks"]
    assert (crashed["status"], crashed["exit_code"]) == ("failed", 3)
    assert [m["name"] for m in crashed["measurements"]] == ["before the crash"]
    assert (unreadable["status"], unreadable["exit_code"], unreadable["measurements"]) == ("failed", 0, [])
    assert "bench_garbled.json: unreadable" in unreadable["results_error"]
    assert ran["status"] == "ok" and ran["measurements"][0]["value"] == 2.0


def test_the_command_line_refuses_unknown_benchmarks_in_one_line() -> None:
    run = subprocess.run([sys.executable, "-m", "benchmarks", "--json", "x.json", "bench_nope.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "no benchmark named bench_nope.py" in run.stderr


def test_make_passes_the_json_file_through() -> None:
    dry = subprocess.run(["make", "-n", "bench", "bench-quick", "JSON=out/bench.json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    commands = [line for line in dry.stdout.splitlines() if "-m benchmarks" in line]
    assert commands == [".venv/bin/python -m benchmarks --json out/bench.json",
                        ".venv/bin/python -m benchmarks --quick --json out/bench.json"]


# -------------------------------------------------------------------------------------- measurements


def test_targets_and_ratios(monkeypatch: pytest.MonkeyPatch) -> None:
    assert target_met(">= 0.6", 0.6) and not target_met("> 0.6", 0.6) and target_met("<= 5000", 800)
    assert Measurement(name="n", value=None, unit="s", target=">= 1").met is None
    assert Measurement(name="n", value=1.0, unit="s", baseline_name="b", baseline_value=0.0).ratio is None
    assert Measurement(name="n", value=1.0, unit="s").to_json_dict()["target_of"] is None
    with pytest.raises(ValueError, match="expected an operator"):
        Measurement(name="n", value=1.0, unit="s", target="at least 3")
    monkeypatch.delenv("PATCHGATE_BENCH_RESULTS", raising=False)
    assert Results("b").write() is None  # run by hand: nothing to hand over


def test_named_results_of_both_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "worker.json"
    monkeypatch.setenv("PATCHGATE_BENCH_RESULTS", str(out))
    write_named_results("bench_worker", {
        "worker, envelopes of 100": 60_000.0,
        "two workers": {"value": 100_000.0, "baseline": "worker, envelopes of 100", "baseline_value": 60_000.0,
                        "target": ">= 1.6"},
        "latency p99": {"value": 180.0, "unit": "ms", "target": "< 250"},
        "plain consumer": {"value": 90_000.0, "baseline": 120_000.0},
        "given ratio": {"value": 5.0, "baseline": "elsewhere", "ratio": 1.25},
    }, targets={"worker, envelopes of 100": ">= 50000"})
    measurements = {m["name"]: m for m in orjson.loads(out.read_bytes())["measurements"]}
    assert measurements["worker, envelopes of 100"]["met"] is True
    assert (measurements["two workers"]["ratio"], measurements["two workers"]["met"]) == (100_000 / 60_000, True)
    assert (measurements["latency p99"]["unit"], measurements["latency p99"]["met"]) == ("ms", True)
    assert measurements["plain consumer"]["ratio"] == 0.75
    assert measurements["given ratio: ratio"]["value"] == 1.25


def test_cpu_model_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n")
    assert cpu_model(info) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    info.write_text("processor\t: 0\n")
    assert cpu_model(info) is None
    assert cpu_model(tmp_path / "missing") is None
