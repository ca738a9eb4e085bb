"""Benchmark: SMTP transactions per second through a real Postfix, without and with the milter.

Run: ``.venv/bin/python benchmarks/bench_postfix.py [--messages 2000] [--rounds 3] [--delivery relay] [--quick]``
as root (Postfix drops privileges itself), with Debian's postfix package installed. The same
messages (an Exchange 2016 Received header, throttled by no verdict, so every message is accepted)
go through the same Postfix configuration, which relays them to a next hop (Postfix's ``smtp-sink``)
like an edge MTA, side by side in one run: with no milter; with a null milter that accepts
everything (``null_milter.py``: what Postfix spends on having any milter); with ``patchgate edge
milter`` on a Unix socket following an (empty) verdicts topic on a Tansu broker, with metadata
publishing off and on (the last includes the broker's own work on this machine); and with the
clients in no connector (the milter lets the connection go at CONNECT). A transaction counts once
its message has left the queue. The ratios are the milter's cost (target: at most 10 % fewer transactions per second).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NULL_MILTER = "postfix + null milter (accept all)"
# both ship with Debian's postfix package
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
sys.path.insert(0, str(ROOT))

from benchmarks.results import Results  # noqa: E402
from benchmarks.run_scope import run_benchmark  # noqa: E402
from processors.devservices import ServiceUnavailable, free_port  # noqa: E402
from processors.devservices.base import tcp_answers  # noqa: E402
from processors.devservices.postfix import PostfixInstance  # noqa: E402
from processors.devservices.tansu import TansuBroker  # noqa: E402
from processors.devservices.worker_process import patchgate_executable  # noqa: E402

CONFIG = """
[edge]
name = "bench-edge"

[[connector]]
id = "bench-onprem"
tenant_id = "bench"
type = "OnPremises"
client_ips = ["{network}"]
"""
SENDERS_NETWORK = "127.0.0.0/8"  # where smtp-source connects from
ELSEWHERE = "192.0.2.0/24"  # a connector the load does not come from
DECIDE, PUBLISH = "postfix + milter (decide only)", "postfix + milter + publishing"
UNRELATED = "postfix + milter, unrelated client"


def message(index: int, body_bytes: int) -> bytes:
    msg = EmailMessage()
    msg["Received"] = (f"from MBX01.contoso.local (10.0.0.5) by EX{index % 50:02d}.contoso.com (10.0.0.6) with "
                       "Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) "
                       "id 15.1.2507.39; Mon, 2 Nov 2026 10:00:00 +0000")
    msg["From"] = "alice@contoso.com"
    msg["To"] = "bob@example.net"
    msg["Subject"] = f"bench {index}"
    msg["Message-ID"] = f"<bench-{index}@contoso.com>"
    line = "x" * 76 + "\n"
    msg.set_content(line * max(1, body_bytes // len(line)))
    return msg.as_bytes()


def queue_empty(postfix: PostfixInstance) -> bool:
    queue = postfix.dir / "queue"
    return not any(any(files) for name in ("maildrop", "incoming", "active", "deferred")
                   for _, _, files in os.walk(queue / name))


def busy_jiffies() -> int:
    """CPU time the whole machine spent (user, nice, system, irq, softirq), in clock ticks."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:8]]
    return fields[0] + fields[1] + fields[2] + fields[5] + fields[6]


def run_load(postfix: PostfixInstance, messages: int, connections: int, body_bytes: int) -> tuple[float, float]:
    """Send ``messages`` over ``connections`` parallel SMTP sessions with Postfix's ``smtp-source``;
    returns transactions per second until the last one has left the queue (delivered or discarded),
    and the machine's CPU microseconds per transaction meanwhile.

    A C load generator, so the client takes little of the CPU that Postfix and the milter share
    (a Python smtplib client competes with them for it and blurs the comparison).
    Each session sends its messages over one connection (``-d``), one transaction each.
    """
    eml = postfix.dir / "message.eml"
    eml.write_bytes(message(1, body_bytes))
    started, cpu_started = time.perf_counter(), busy_jiffies()
    done = subprocess.run(
        [SMTP_SOURCE, "-d", "-s", str(connections), "-m", str(messages), "-M", "ex01.contoso.com",
         "-f", "alice@contoso.com", "-t", "bob@example.net", "-F", str(eml), f"127.0.0.1:{postfix.port}"],
        capture_output=True, text=True, timeout=600)
    deadline = time.monotonic() + 120
    while not queue_empty(postfix):  # what was accepted must also have been delivered
        if time.monotonic() > deadline:
            raise RuntimeError(f"Postfix did not empty its queue:\n{postfix.log_tail()}")
        time.sleep(0.005)
    elapsed, cpu = time.perf_counter() - started, busy_jiffies() - cpu_started
    if done.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return messages / elapsed, cpu * 1e6 / os.sysconf("SC_CLK_TCK") / messages


CONFIGURATIONS = [("postfix alone", None, False, SENDERS_NETWORK),
                  (NULL_MILTER, "null", False, SENDERS_NETWORK),
                  (DECIDE, "patchgate", False, SENDERS_NETWORK),
                  (PUBLISH, "patchgate", True, SENDERS_NETWORK),
                  (UNRELATED, "patchgate", True, ELSEWHERE)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, help="messages per measured run (default 2000; 200 with --quick)")
    parser.add_argument("--rounds", type=int, help="each configuration is measured this often, interleaved "
                                                   "(default 5; 1 with --quick)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--body-bytes", type=int, default=2000, help="size of each message's body")
    parser.add_argument("--delivery", choices=["relay", "discard"], default="relay",
                        help="relay accepted mail over SMTP to a next hop (Postfix's smtp-sink), as an edge "
                             "does, or discard it")
    parser.add_argument("--queue-on-disk", action="store_true",
                        help="keep Postfix's queue in the temp directory instead of /dev/shm")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that the benchmark runs")
    args = parser.parse_args()
    args.messages = args.messages or (200 if args.quick else 2000)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.warmup = 20 if args.quick else 50
    return args


def main() -> int:
    args = parse_args()
    return run_benchmark("bench_postfix", lambda: measure(args))


def check_requirements() -> None:
    if os.geteuid() != 0:
        raise ServiceUnavailable("needs root (Postfix drops privileges itself): run as root (`make bench`)")
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not Path(tool).exists():
            raise ServiceUnavailable(f"{tool} is missing: apt-get install postfix (`make bench` as root does)")


@contextlib.contextmanager
def next_hop(delivery: str) -> Iterator[dict[str, str]]:
    """Postfix settings that relay to a running smtp-sink (``relay``), or none (``discard``)."""
    if delivery != "relay":
        yield {}
        return
    port = free_port()
    sink = subprocess.Popen([SMTP_SINK, "-u", "nobody", f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not tcp_answers("127.0.0.1", port):
            if sink.poll() is not None:
                raise ServiceUnavailable(f"smtp-sink exited with code {sink.returncode}")
            time.sleep(0.02)
        yield {"transport_maps": f"inline:{{ example.net=smtp:[127.0.0.1]:{port} }}"}
    finally:
        sink.terminate()
        sink.wait(10)


@contextlib.contextmanager
def running_milter(postfix: PostfixInstance, kind: str | None, publish: bool, network: str,
                   bootstrap: str) -> Iterator[None]:
    """The configuration's milter listening next to ``postfix`` (which is told to call it), if any."""
    if kind is None:
        yield
        return
    sock = postfix.dir / "milter.sock"
    config = postfix.dir / "edge.toml"
    config.write_text(CONFIG.replace("{network}", network))
    argv = [sys.executable, str(Path(__file__).with_name("null_milter.py")), str(sock)]
    if kind == "patchgate":
        argv = [*patchgate_executable(), "edge", "milter", "--config", str(config), "--listen", f"unix:{sock}",
                "--socket-group", "postfix", "--bootstrap", bootstrap, "--catchup-timeout", "20",
                "--metrics-interval", "3600"]
    milter = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, "PATCHGATE_EDGE_PUBLISH": "1" if publish else "0"})
    try:
        assert milter.stdout is not None
        if "ready" not in milter.stdout.readline():
            raise RuntimeError(f"the {kind} milter did not start (exit code {milter.wait(15)})")
        postfix.milters = f"{{ unix:{sock}, default_action=accept }}"
        yield
    finally:
        milter.terminate()
        milter.wait(15)


def measure(args: argparse.Namespace) -> int:
    check_requirements()
    # Postfix fsyncs every queue file: on this machine's virtual disk that made consecutive runs of
    # the same configuration differ by up to 2x. In memory, runs differ by ~10 % and Postfix's own
    # cost per message is lower, so the milter's share comes out larger (the conservative side).
    shm = Path("/dev/shm")
    queue_parent = None if args.queue_on_disk or not shm.is_dir() else shm
    samples: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    broker = TansuBroker()
    try:
        broker.start()
        with next_hop(args.delivery) as extra:
            for label, kind, publish, network in CONFIGURATIONS * args.rounds:
                postfix = PostfixInstance("", extra=extra, parent=queue_parent)
                try:
                    with running_milter(postfix, kind, publish, network, broker.bootstrap):
                        postfix.start()
                        run_load(postfix, args.warmup, 2, args.body_bytes)  # processes spawned, caches filled
                        rate, cpu_per_message = run_load(postfix, args.messages, args.connections, args.body_bytes)
                finally:
                    postfix.cleanup()
                samples.setdefault(label, []).append(rate)
                cpu.setdefault(label, []).append(cpu_per_message)
    finally:
        broker.stop()
    print_results(args, samples, cpu)
    return 0


def print_results(args: argparse.Namespace, samples: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
    results = {label: statistics.median(rates) for label, rates in samples.items()}
    cpu_us = {label: statistics.median(values) for label, values in cpu.items()}
    print(f"\nSMTP transactions through Postfix ({args.messages} messages of {args.body_bytes:,} body bytes, "
          f"{args.delivery} delivery, {args.connections} connections; median of {args.rounds} interleaved rounds; "
          "a transaction counts once its message has left the queue)")
    print(f"  {'':<36} {'tx/s':>8} {'CPU µs/tx':>10}   runs (tx/s)")
    for label, rate in results.items():
        print(f"  {label:<36} {rate:>8.0f} {cpu_us[label]:>10.0f}   {', '.join(f'{r:.0f}' for r in samples[label])}")
    baseline, baseline_cpu = results["postfix alone"], cpu_us["postfix alone"]
    print("  cost vs Postfix alone (target <= 10 % fewer transactions per second), measured and from CPU per "
          "transaction (the machine is saturated, so tx/s ~ cores / CPU per tx; steadier run to run):")
    for label in (NULL_MILTER, DECIDE, PUBLISH, UNRELATED):
        print(f"    {label:<36} {1 - results[label] / baseline:>6.1%} measured, "
              f"{1 - baseline_cpu / cpu_us[label]:>6.1%} from CPU")
    print(f"  ('{UNRELATED}': the client is in no connector, so the milter lets the connection go at CONNECT;")
    print(f"   {NULL_MILTER}: what Postfix and a milter process cost with no decision at all)")
    print("  (the load comes from Postfix's smtp-source; Postfix, the milter and, when publishing, the broker share "
          f"{os.cpu_count()} cores; one run of one configuration differs from the next by up to ~15 %)")
    record_results(results, cpu_us)


def record_results(rates: dict[str, float], cpu_us: dict[str, float]) -> None:
    """Each configuration against Postfix alone, in transactions per second and CPU per transaction."""
    out = Results("bench_postfix")
    alone = "postfix alone"
    out.add(name=f"SMTP transactions, {alone}", value=rates[alone], unit="tx/s")
    for label in (NULL_MILTER, DECIDE, PUBLISH, UNRELATED):
        out.add(name=f"SMTP transactions, {label}", value=rates[label], unit="tx/s",
                baseline_name=f"SMTP transactions, {alone}", baseline_value=rates[alone],
                target=None if label == NULL_MILTER else ">= 0.9")  # at most 10 % fewer than Postfix alone
        out.add(name=f"CPU per transaction, {label}", value=cpu_us[label], unit="us/tx",
                baseline_name=f"CPU per transaction, {alone}", baseline_value=cpu_us[alone])
    out.write()


if __name__ == "__main__":
    sys.exit(main())
