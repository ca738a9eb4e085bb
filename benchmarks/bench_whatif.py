"""Benchmark: ``patchgate whatif`` streams. Memory by records, and throughput against the classifier.

Run: ``.venv/bin/python benchmarks/bench_whatif.py [--n N] [--servers S] [--rounds R] [--quick]``. In one run:

1. **Memory**: ``patchgate whatif`` (a child process, ``--format json``) reads N and then 4N
   records of the same S servers over the same 120 days, streamed through its standard input (no
   file on disk); its peak RSS (``ru_maxrss`` of each child) must not grow with the records: the
   ratio RSS(4N) / RSS(N) is printed (target: at most 1.10).
2. **Throughput**: over the same records (N/5, at least 20,000, held in memory), the best of
   ``--rounds`` rounds (3) of each side, run side by side in every round, records per second
   of the whole simulation (JSON, contract, the worker's admission and classification, event-time
   order, the edge decision, the counts, the worker's batches for the records that can change a
   verdict, the timer) against the pure classifier alone (JSON decode and one ``classify`` call per
   record, as ``patchgate classify`` does per message); ratio target at least 0.6.
3. **What no simulation can go below** (reported, not judged): one straight loop over the same
   records doing only what every record needs before the simulation proper (JSON decode, the
   contract check, the worker's admission and classification, the edge decision), against the same
   baseline. Its ratio is the ceiling of (2) on the machine of the run.

Every record has its own timestamps and event id (as real mail does); its topmost hop is the
server's own, so the simulator's per-hop cache works as the worker's does.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from benchmarks.results import Results
from benchmarks.run_scope import run_benchmark
from edge.verdicts import message_decision
from processors.classify import Connection, classify, default_catalog, default_policy, default_products
from processors.contracts import contracts
from processors.whatif.simulate import Simulation
from processors.whatif.sources import message_records

T0 = datetime(2026, 10, 5, tzinfo=UTC)
DAYS = 120
BUILDS = ["15.1.2507.39", "15.2.2562.53", "15.2.1748.53", "15.0.1497.48", "15.2.2562.29", "14.3.513.0", None]
CIPHER = "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)"


def records(n: int, servers: int) -> Iterator[bytes]:
    """``n`` metadata records of ``servers`` servers, in time order over :data:`DAYS` days, one per line."""
    step = DAYS * 86400 / n
    for i in range(n):
        at = T0 + timedelta(seconds=i * step)
        s = (i * 7919) % servers
        tenant, name, build = f"tenant{s % 50}", f"mx{s}.tenant{s % 50}.example", BUILDS[s % len(BUILDS)]
        stamp = format_datetime(at - timedelta(seconds=1))
        version = f" id {build}" if build else ""
        hop = (f"from EXMBX{s}.corp.local (10.0.{s % 250}.5) by {name} (10.1.0.6) with Microsoft SMTP Server "
               f"{CIPHER}{version}; {stamp}")
        yield orjson.dumps({
            "schema": "patchgate.metadata/1", "event_id": f"edge1:{i}",
            "observed_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "edge": "edge1.example.net", "tenant_id": tenant, "connector": {"id": "c1", "type": "OnPremises"},
            "client": {"ip": f"198.51.{s // 250 % 250}.{s % 250}", "helo": name},
            "message": {"id": f"<{i}@{name}>", "size": 4096, "recipients": 1},
            "headers": [["Received", hop], ["Message-ID", f"<{i}@{name}>"], ["X-MS-Exchange-Organization-AuthAs",
                                                                             "Internal"]],
        }) + b"\n"


def peak_rss_kib(n: int, servers: int) -> tuple[int, float]:
    """Peak RSS (KiB) and seconds of ``patchgate whatif`` reading ``n`` records from a pipe."""
    command = [sys.executable, "-m", "processors.cli", "whatif", "/dev/stdin", "--format", "json", "-o", os.devnull]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdin is not None and child.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(child.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    try:
        buffer: list[bytes] = []
        for line in records(n, servers):
            buffer.append(line)
            if len(buffer) >= 4096:
                child.stdin.write(b"".join(buffer))
                buffer.clear()
        child.stdin.write(b"".join(buffer))
        child.stdin.close()
    except BrokenPipeError:
        pass
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    if child.returncode != 0:
        raise SystemExit(f"patchgate whatif failed ({child.returncode}): {b''.join(errors).decode()[-500:]}")
    return usage.ru_maxrss, time.perf_counter() - started


def classify_rate(lines: list[bytes]) -> float:
    catalog, policy, products = default_catalog(), default_policy(), default_products()
    started = time.perf_counter()
    for line in lines:
        record = orjson.loads(line)
        client = record["client"]
        classify(record["headers"], Connection(ip=client["ip"], helo=client["helo"]),
                 datetime.fromisoformat(record["observed_at"]), catalog=catalog, policy=policy, products=products)
    return len(lines) / (time.perf_counter() - started)


def whatif_rate(lines: list[bytes]) -> float:
    """Records per second of a whole simulation; its set-up (loading the policy and catalogs, as
    the baseline's are loaded before it is timed) is not timed."""
    started = 0.0

    async def run() -> None:
        nonlocal started
        simulation = Simulation()
        items = (item for n, line in enumerate(lines) for item in message_records(f"line {n}", None, line))
        started = time.perf_counter()
        prediction = await simulation.run(items)
        assert prediction.records == len(lines) and prediction.skipped == 0, prediction.skips[:3]

    asyncio.run(run())
    return len(lines) / (time.perf_counter() - started)


def best_rates(lines: list[bytes], rounds: int) -> tuple[float, float, list[float]]:
    """The best whatif and classify-alone rates of ``rounds`` rounds, each running both side by side
    (a neighbour on a shared machine slows a run down, never speeds it up), and each round's ratio."""
    whatif, alone, ratios = 0.0, 0.0, []
    for _ in range(rounds):
        gc.collect()  # neither side pays for the other's garbage
        w = whatif_rate(lines)
        gc.collect()
        a = classify_rate(lines)
        whatif, alone = max(whatif, w), max(alone, a)
        ratios.append(w / a)
    return whatif, alone, ratios


def per_record_floor_rate(lines: list[bytes]) -> float:
    """Records per second of what every record needs, in one loop: decode, contract check, the
    worker's admission and classification (a fresh worker, as a run has), the edge decision."""
    simulation = Simulation()
    admit, index, scope = simulation.admit, simulation.index, simulation.worker.policy.enforcement
    valid, from_iso = contracts.metadata_record_fast, datetime.fromisoformat
    started = time.perf_counter()
    for line in lines:
        record = orjson.loads(line)
        if not valid(record):
            raise SystemExit("bench_whatif: a generated record fails its contract")
        at = from_iso(record["observed_at"])
        c, key = admit(record, at, None)
        message_decision(index, key, at.timestamp(), status=c.status,
                         in_scope=record["connector"]["type"] in scope.enforced_connector_types)
    return len(lines) / (time.perf_counter() - started)


def measure(args: argparse.Namespace) -> int:
    results = Results("bench_whatif")
    try:
        measure_into(args, results)
    finally:
        results.write()  # what was measured, also when a later part fails
    return 0


def measure_into(args: argparse.Namespace, results: Results) -> None:
    print(f"bench_whatif: {args.servers} servers over {DAYS} days; RSS at {args.n:,} and {4 * args.n:,} records, "
          "one child process each, records piped in", flush=True)
    small, small_s = peak_rss_kib(args.n, args.servers)
    large, large_s = peak_rss_kib(4 * args.n, args.servers)
    print(f"  peak RSS  {args.n:>10,} records: {small / 1024:8.1f} MiB  ({args.n / small_s:,.0f} records/s end to end)")
    print(f"  peak RSS  {4 * args.n:>10,} records: {large / 1024:8.1f} MiB  ({4 * args.n / large_s:,.0f} records/s)")
    ratio = large / small
    print(f"  RSS ratio 4N / N: {ratio:.3f}  (target <= 1.10): {'ok' if ratio <= 1.10 else 'OVER'}")
    results.add(name=f"whatif peak RSS, {4 * args.n:,} records", value=large / 1024, unit="MiB",
                baseline_name=f"whatif peak RSS, {args.n:,} records", baseline_value=small / 1024, target="<= 1.1")
    count = max(20_000, args.n // 5)
    lines = list(records(count, args.servers))
    classify_rate(lines[:2000])  # warm the catalogs' caches alike
    whatif, alone, rounds = best_rates(lines, args.rounds)
    print(f"  throughput over {count:,} records, best of {args.rounds} rounds, each whatif then classify alone "
          f"(round ratios {', '.join(f'{r:.2f}' for r in rounds)}): whatif {whatif:,.0f}/s, classify alone "
          f"{alone:,.0f}/s, ratio {whatif / alone:.2f}  (target >= 0.6): {'ok' if whatif / alone >= 0.6 else 'UNDER'}")
    results.add(name="patchgate whatif", value=whatif, unit="records/s", baseline_name="classify alone",
                baseline_value=alone, target=">= 0.6")
    floor = per_record_floor_rate(lines)
    print(f"  what every record needs (decode, contract, admission and classification, edge decision): "
          f"{floor:,.0f}/s, ratio {floor / alone:.2f} to classify alone: the ceiling of the ratio above")
    results.add(name="decode, contract, worker admission and classification, edge decision (one loop)",
                value=floor, unit="records/s", baseline_name="classify alone", baseline_value=alone)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, help="records of the smaller run (default 1,000,000; 50,000 with --quick)")
    ap.add_argument("--servers", type=int, help="servers (default 500; 50 with --quick)")
    ap.add_argument("--quick", action="store_true", help="small sizes, to check that the benchmark runs")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds, the best of each side counts (3)")
    args = ap.parse_args()
    args.n = args.n or (50_000 if args.quick else 1_000_000)
    args.servers = args.servers or (50 if args.quick else 500)
    return run_benchmark("bench_whatif", lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
