"""``make bench``: run every benchmark, one after the other, each in its own process.

Each prints its own numbers and the side-by-side baseline measured in the same run. ``--quick``
(``make bench-quick``) runs each with small sizes: the ratios are rough, the point is that every
benchmark runs. The exit code is non-zero when any benchmark failed to run. All temporary files and
processes of the run are gone when it ends, also after Ctrl-C (:mod:`benchmarks.run_scope`).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.run_scope import run_benchmark  # noqa: E402

BENCHMARKS = ["bench_classify.py", "bench_edge.py", "bench_postfix.py", "bench_worker.py", "bench_whatif.py"]
#: how long a benchmark may take to stop what it started once interrupted
INTERRUPT_GRACE = 60.0


def run_one(name: str, quick: bool) -> int:
    child = subprocess.Popen([sys.executable, str(HERE / name), *(["--quick"] if quick else [])])
    try:
        return child.wait()
    except KeyboardInterrupt:
        # A Ctrl-C in the terminal reached the child too; a SIGTERM sent to this process did not.
        child.send_signal(signal.SIGINT)
        try:
            child.wait(INTERRUPT_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise


def run_all(names: list[str], quick: bool) -> int:
    failed = []
    for name in names:
        print(f"\n===== {name}{' (quick)' if quick else ''} =====", flush=True)
        if run_one(name, quick) != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: every benchmark in a few minutes")
    parser.add_argument("names", nargs="*", metavar="BENCHMARK",
                        help=f"only these ({', '.join(BENCHMARKS)}); all by default")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)} (there are {', '.join(BENCHMARKS)})")
    return run_benchmark("benchmarks", lambda: run_all(args.names or BENCHMARKS, args.quick))


if __name__ == "__main__":
    sys.exit(main())
