"""Benchmark: classifications per second for realistic 6-hop header blocks (one core).

Run: ``.venv/bin/python benchmarks/bench_classify.py [--n N] [--quick]``. Prints the classifier's rate and,
measured in the same run over the same headers, the rate of a trivial baseline (one precompiled
regex search for an ``id <build>`` over the topmost Received value), so numbers from different
machines can be compared by their ratio.

Every generated message has its own timestamps and message ids in every hop (as real mail does),
so per-hop caches cannot help; the verdict cache per (build, day) is part of the design and does.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run_scope import run_benchmark
from processors.classify import Connection, classify, default_catalog, default_policy

BUILDS = [
    "15.2.2562.53", "15.2.2562.49", "15.2.2562.37", "15.2.1748.49", "15.2.1544.44", "15.1.2507.72",
    "15.1.2507.39", "15.0.1497.48", "14.3.513.0", "14.3.487.0", "8.3.517.0", "15.2.1258.39",
    "15.01.2507.039", "15.1.9999.1",
]  # fmt: skip
CIPHER = "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)"


def _date(t: datetime) -> str:
    return t.strftime("%a, %d %b %Y %H:%M:%S +0000")


def make_headers(rng: random.Random, base: datetime) -> tuple[list[tuple[str, str]], Connection]:
    t = base + timedelta(seconds=rng.randrange(86400))
    org = rng.choice(["contoso", "fabrikam", "northwind", "adatum", "litware"])
    build = rng.choice(BUILDS)
    n = rng.randrange(1000)
    kind = rng.random()
    hops: list[str] = []
    if kind < 0.8:  # Exchange: Edge <- Frontend <- Mailbox <- client submission (6 hops)
        hops.append(
            f"from EXFE{n}.{org}.local (10.0.{n % 250}.6) by mail{n}.{org}.com (203.0.113.{n % 250}) with "
            f"Microsoft SMTP Server {CIPHER} id {build}; {_date(t)}"
        )
        hops.append(
            f"from EXMBX{n}.{org}.local (10.0.1.{n % 250}) by EXFE{n}.{org}.local (10.0.{n % 250}.6) with "
            f"Microsoft SMTP Server {CIPHER} id {build} via Frontend Transport; {_date(t)}"
        )
        hops.append(
            f"from EXMBX{n}.{org}.local (10.0.1.{n % 250}) by EXMBX{n}.{org}.local (10.0.1.{n % 250}) with "
            f"Microsoft SMTP Server {CIPHER} id {build}; {_date(t)}"
        )
        hops.append(
            f"from EXMBX{n}.{org}.local ([fe80::1%12]) by EXMBX{n}.{org}.local ([fe80::1%12]) with mapi id "
            f"{build}; {_date(t)}"
        )
        hops.append(
            f"from client{n}.{org}.local (10.2.0.{n % 250}) by EXFE{n}.{org}.local with "
            f"Microsoft SMTP Server id {build} via Frontend Transport; {_date(t)}"
        )
        hops.append(f"from [10.9.9.{n % 250}] by EXFE{n}.{org}.local with Microsoft SMTP Server id {build}; {_date(t)}")
    elif kind < 0.9:  # Postfix relay in front
        hops.append(
            f"from EX{n}.{org}.local (ex{n}.{org}.local [10.0.0.5]) (using TLSv1.3 with cipher "
            f"TLS_AES_256_GCM_SHA384 (256/256 bits)) (No client certificate requested) by "
            f"relay.{org}.com (Postfix) with ESMTPS id 4X{n:05d}Abc for <u@example.org>; {_date(t)}"
        )
        hops += [f"from a by EX{n}.{org}.local with Microsoft SMTP Server id {build}; {_date(t)}"] * 5
    else:  # Exchange Online
        hops.append(
            f"from DM6PR01MB{n}.namprd01.prod.outlook.com (2603:10b6:5:1::{n:x}) by "
            f"DM6PR01MB{n + 1}.namprd01.prod.outlook.com (2603:10b6:5:2::1) with Microsoft SMTP "
            f"Server {CIPHER} id 15.20.7633.{n % 50}; {_date(t)}"
        )
        hops += [f"from x by DM6PR01MB{n}.namprd01.prod.outlook.com with mapi id 15.20.7633.1; {_date(t)}"] * 5
    headers = [("Received", h) for h in hops]
    headers += [
        ("Subject", f"Quarterly report {n}"),
        ("From", f"user{n}@{org}.com"),
        ("To", "someone@example.org"),
        ("Message-ID", f"<{rng.getrandbits(64):x}@EX{n}.{org}.local>"),
        ("Date", _date(t)),
    ]
    return headers, Connection(ip=f"203.0.113.{n % 250}", helo=f"mail{n}.{org}.com")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, help="messages per timed run (default 100,000; 10,000 with --quick)")
    ap.add_argument("--repeat", type=int, help="timed runs, the best counts (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="small sizes, to check that the benchmark runs")
    args = ap.parse_args()
    args.n = args.n or (10_000 if args.quick else 100_000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    return run_benchmark("bench_classify", lambda: measure(args))


def measure(args: argparse.Namespace) -> int:
    rng = random.Random(1)
    base = datetime(2026, 11, 28, tzinfo=UTC)
    msgs = [make_headers(rng, base) for _ in range(args.n)]
    ats = [base + timedelta(seconds=i % 86400) for i in range(args.n)]
    default_catalog()
    default_policy()
    for (h, c), at in zip(msgs[:1000], ats, strict=False):  # warm up (loads, verdict cache)
        classify(h, c, at)

    best = float("inf")
    statuses: dict[str, int] = {}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for (h, c), at in zip(msgs, ats, strict=True):
            classify(h, c, at)
        best = min(best, time.perf_counter() - t0)
    for (h, c), at in zip(msgs, ats, strict=True):
        s = classify(h, c, at).status
        statuses[s] = statuses.get(s, 0) + 1

    pattern = re.compile(r"\bid (\d+\.\d+\.\d+\.\d+)")
    base_best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for h, _c in msgs:
            for name, value in h:
                if name.lower() == "received":
                    pattern.search(value)
                    break
        base_best = min(base_best, time.perf_counter() - t0)

    rate = args.n / best
    base_rate = args.n / base_best
    print(f"messages:            {args.n} (6 Received hops each), statuses: {statuses}")
    print(f"classify():          {rate:12,.0f} classifications/s  ({1e6 / rate:.2f} us each)")
    print(f"baseline (1 regex):  {base_rate:12,.0f} searches/s         ({1e6 / base_rate:.2f} us each)")
    print(f"ratio:               {base_rate / rate:.1f}x slower than the trivial baseline")
    print(f"target >= 100,000/s: {'met' if rate >= 100_000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
