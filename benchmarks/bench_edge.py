"""Edge benchmarks: ``VerdictIndex.decide()`` throughput and milter round-trip latency.

    .venv/bin/python benchmarks/bench_edge.py            # everything, ~30 s
    .venv/bin/python benchmarks/bench_edge.py --quick    # small sizes, a few seconds

1. ``decide()``: calls/s over 10,000 verdicts (mixed throttle/block/accept windows, unknown keys), and
   the same with every verdict in shadow mode (``"shadow": true``), side by side.
2. Milter: the server runs in a separate process (the real :class:`PatchgateMilter`: connector
   match, header classification with the packaged catalog, verdict decision, metadata record built
   and handed to an in-memory publisher) on a Unix socket and on TCP with ``TCP_NODELAY``. An asyncio
   driver speaking like Postfix (negotiated "no reply" flags, so one message = MAIL..EOH pipelined +
   one reply) measures per-message latency p50/p99 at 1, 10 and 50 concurrent connections.
   The driver is Python too and shares the 2-core machine, so at high concurrency part of the
   latency is the driver's own queueing; numbers are upper bounds for the milter.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from benchmarks.results import Results  # noqa: E402
from benchmarks.run_scope import run_benchmark  # noqa: E402
from edge.verdicts import VerdictIndex  # noqa: E402
from processors.events.metadata import MetadataRecord  # noqa: E402
from processors.events.verdict import join_verdict, verdict_parts  # noqa: E402


def _verdict(key: str, i: int, shadow: bool = False) -> bytes:
    tenant, server = key.split("/", 1)
    kind = i % 4
    throttle, block = [(5, 0), (30, 5), (0, 60), (0, 0)][kind]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    parts = verdict_parts(
        server_key=key, tenant_id=tenant, server=server, issued_at=start, effective_at=start, valid_until=None,
        stage=[2, 5, 8, 1][kind], throttle_minutes=throttle, block_minutes=block, window_offset=i % 60,
        throttle_reply=f"450 4.7.230 Connecting Exchange server version is out-of-date; connection to "
                       f"Exchange Online throttled for {throttle} mins/hr.",
        block_reply=f"550 5.7.230 Connecting Exchange server version is out-of-date; connection to "
                    f"Exchange Online blocked for {block} mins/hr.",
        paused_until=None, product="Exchange Server 2016", build="15.1.2507.6", status="unsupported",
        rule="end_of_support", recommended_builds=[], client_ips=[], shadow=shadow,
    )
    return join_verdict(parts, 1)


def build_index(n: int = 10_000, shadow: bool = False) -> tuple[VerdictIndex, list[str]]:
    idx = VerdictIndex()
    keys = [f"tenant{i % 50}/ex{i:05d}.example.com" for i in range(n)]
    for i, k in enumerate(keys):
        assert idx.apply_raw(k.encode(), _verdict(k, i, shadow))
    idx.caught_up = True
    return idx, keys


def bench_decide(calls: int, repeat: int, shadow: bool = False) -> dict[str, float]:
    idx, keys = build_index(shadow=shadow)
    lookups = (keys + [f"tenant1/unknown{i}.example.com" for i in range(len(keys) // 10)]) * (calls // len(keys) + 1)
    lookups = lookups[:calls]
    now = time.time()
    decide = idx.decide
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for k in lookups:
            decide(k, now)
        best = min(best, time.perf_counter() - t0)
    # Loop overhead alone, to report the cost of decide() itself.
    t0 = time.perf_counter()
    for _k in lookups:
        pass
    loop = time.perf_counter() - t0
    return {"calls_per_s": calls / best, "ns_per_call": best / calls * 1e9,
            "ns_per_call_net": (best - loop) / calls * 1e9}


# --- milter ---------------------------------------------------------------------------------------

HEADERS = [
    ("Received", "from EX02.contoso.com (10.0.0.6) by EX01.contoso.com (10.0.0.5) with Microsoft SMTP Server "
                 "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.6; "
                 "Sat, 28 Nov 2026 10:00:00 +0000"),
    ("Received", "from EX02.contoso.com (10.0.0.6) by EX02.contoso.com (10.0.0.6) with Microsoft SMTP Server "
                 "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.6 via Mailbox "
                 "Transport; Sat, 28 Nov 2026 09:59:59 +0000"),
    ("From", "Alice <alice@contoso.com>"), ("To", "bob@example.net"), ("Subject", "quarterly numbers"),
    ("Message-ID", "<abc@contoso.com>"), ("Date", "Sat, 28 Nov 2026 10:00:00 +0000"),
    ("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=utf-8"),
    ("X-MS-Exchange-Organization-AuthSource", "EX01.contoso.com"),
    ("X-MS-Exchange-Organization-AuthAs", "Internal"),
]


def serve(sock_path: str) -> None:
    """Server process: PatchgateMilter on a Unix socket and TCP; prints 'ready <port>'."""
    from edge.config import Connector, config_from_connectors
    from edge.milter.app import PatchgateMilter
    from edge.milter.server import MilterServer

    class NullPublisher:
        def __init__(self) -> None:
            self.n = 0

        def publish(self, server_key: str, record: MetadataRecord) -> bool:
            orjson.dumps(record)  # the real publisher serialises in publish()
            self.n += 1
            return True

    idx, _ = build_index()
    key = "contoso/ex01.contoso.com"
    idx.apply_raw(key.encode(), _verdict(key, 1))  # throttle+block windows
    cfg = config_from_connectors([Connector("c", "contoso", "OnPremises", (ipaddress.ip_network("192.0.2.0/24"),))])
    app = PatchgateMilter(cfg, idx, NullPublisher())

    async def main() -> None:
        server = MilterServer(app)
        await server.listen_unix(sock_path)
        port = await server.listen_tcp("127.0.0.1", 0)
        print(f"ready {port}", flush=True)
        await asyncio.get_running_loop().create_future()  # until killed

    asyncio.run(main())


async def _client(connect: Any, messages: int, latencies: list[float]) -> None:
    from edge.milter.driver import MilterDriver

    d: MilterDriver = await connect()
    await d.negotiate()
    first = True
    for i in range(messages):
        t0 = time.perf_counter()
        await d.message(headers=HEADERS, queue_id=f"Q{i}", connect=first)
        latencies.append(time.perf_counter() - t0)
        first = False
        await d.abort()
    await d.quit()


async def _run_milter(kind: str, sock: str, port: int, concurrency: int, total: int) -> dict[str, float]:
    from edge.milter.driver import MilterDriver

    def connect() -> Any:
        return MilterDriver.unix(sock) if kind == "unix" else MilterDriver.tcp("127.0.0.1", port)

    # Warm-up (classifier caches, connection setup paths).
    await _client(connect, min(50, total), [])
    latencies: list[float] = []
    per = max(1, total // concurrency)
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(connect, per, latencies) for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e6,
        "mean_us": statistics.fmean(latencies) * 1e6,
        "msgs_per_s": len(latencies) / elapsed,
    }


async def _connect_cost(kind: str, sock: str, port: int, n: int) -> float:
    from edge.milter.driver import MilterDriver

    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        d = await (MilterDriver.unix(sock) if kind == "unix" else MilterDriver.tcp("127.0.0.1", port))
        await d.negotiate()
        times.append(time.perf_counter() - t0)
        await d.quit()
    times.sort()
    return times[len(times) // 2] * 1e6


def bench_milter(total: int, connects: int, results: Results) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        _bench_milter(os.path.join(tmp, "milter.sock"), total, connects, results)


def _bench_milter(sock: str, total: int, connects: int, results: Results) -> None:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", sock], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"milter server did not start: {line!r}")
        port = int(line.split()[1])
        print("\nmilter round trip per message (MAIL..EOH pipelined, one reply), server in its own process")
        print(f"{'conns':>5} | {'unix p50':>9} {'p99':>8} {'msg/s':>8} | {'tcp p50':>9} {'p99':>8} {'msg/s':>8}"
              f" | {'tcp/unix p50':>12}")
        for c in (1, 10, 50):
            u = asyncio.run(_run_milter("unix", sock, port, c, total))
            t = asyncio.run(_run_milter("tcp", sock, port, c, total))
            print(f"{c:>5} | {u['p50_us']:>7.0f}us {u['p99_us']:>6.0f}us {u['msgs_per_s']:>8.0f} | "
                  f"{t['p50_us']:>7.0f}us {t['p99_us']:>6.0f}us {t['msgs_per_s']:>8.0f} | "
                  f"{t['p50_us'] / u['p50_us']:>11.2f}x")
            record_milter(results, c, u, t)
        cu = asyncio.run(_connect_cost("unix", sock, port, connects))
        ct = asyncio.run(_connect_cost("tcp", sock, port, connects))
        print(f"connect + OPTNEG (once per SMTP session), p50: unix {cu:.0f}us, tcp {ct:.0f}us")
        results.add(name="milter connect + OPTNEG p50, tcp", value=ct, unit="us",
                    baseline_name="milter connect + OPTNEG p50, unix socket", baseline_value=cu)
    finally:
        proc.kill()
        proc.wait()


def record_milter(results: Results, conns: int, unix: dict[str, float], tcp: dict[str, float]) -> None:
    """One concurrency's round trips: each TCP number against the Unix socket's of the same moment."""
    for stat, unit in (("p50_us", "us"), ("p99_us", "us"), ("msgs_per_s", "messages/s")):
        label = stat.split("_")[0]
        unix_name = f"milter round trip {label}, unix socket, {conns} connections"
        results.add(name=unix_name, value=unix[stat], unit=unit)
        results.add(name=f"milter round trip {label}, tcp, {conns} connections", value=tcp[stat], unit=unit,
                    baseline_name=unix_name, baseline_value=unix[stat])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", metavar="SOCK", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that the benchmark runs")
    args = parser.parse_args()
    if args.serve:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C goes to the benchmark, which stops this server
        serve(args.serve)
        return 0
    return run_benchmark("bench_edge", lambda: measure(args.quick))


def measure(quick: bool) -> int:
    results = Results("bench_edge")
    calls, repeat = (100_000, 2) if quick else (1_000_000, 5)
    d = bench_decide(calls, repeat)
    print(f"decide(): {d['calls_per_s'] / 1e6:.2f} M calls/s, {d['ns_per_call']:.0f} ns/call "
          f"({d['ns_per_call_net']:.0f} ns without the loop), target <= 5000 ns: "
          f"{'ok' if d['ns_per_call'] <= 5000 else 'MISSED'}")
    results.add(name="VerdictIndex.decide() per call", value=d["ns_per_call"], unit="ns", target="<= 5000",
                notes=(f"{d['ns_per_call_net']:.0f} ns without the loop",))
    s = bench_decide(calls, repeat, shadow=True)
    print(f"decide(), every verdict in shadow mode: {s['ns_per_call']:.0f} ns/call, "
          f"{s['ns_per_call'] / d['ns_per_call']:.2f}x the enforcing verdicts'")
    results.add(name="decide() per call, every verdict in shadow mode", value=s["ns_per_call"], unit="ns",
                baseline_name="decide() per call, enforcing verdicts", baseline_value=d["ns_per_call"])
    try:
        bench_milter(300 if quick else 10_000, 20 if quick else 200, results)
    finally:
        results.write()  # what was measured, also when the milter part fails
    return 0


if __name__ == "__main__":
    sys.exit(main())
