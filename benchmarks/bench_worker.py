"""Benchmark: metadata records per second through one worker, side by side with its baselines.

Run: ``.venv/bin/python benchmarks/bench_worker.py [--envelopes 2000] [--singles 20000]``.
Starts its own Tansu broker and Redis, fills topics, then measures in one run:

1. a plain confluent-kafka consumer that only parses the messages (the ceiling of Python here);
2. an empty Faust agent (Faust's own per-message cost);
3. ``patchgate worker`` on unbatched records (one Kafka message per record);
4. ``patchgate worker`` on batch envelopes of 100 records (Kafka in → validate → classify → Redis
   → verdicts out);
5. two workers in one consumer group on the envelopes (8 partitions), and their ratio to one,
   measured while both are busy: from the moment both own partitions (each join stops the group
   for a rebalance) to the moment the first has drained its share of the backlog;
6. latency from producing an envelope to its verdict on the verdicts topic, at half the rate of (4):
   steady traffic from 200 known servers (seen once before the clock starts), every 10th envelope
   from a newly detected server (the envelopes are built before the clock starts: the load
   generator must not take the worker's CPU); measured after a few seconds of the same traffic
   unmeasured, and split at the verdict's CreateTime (when the worker produced it).

Rates are measured from the first processed message to the last (start-up excluded), by polling
the workers' progress marks in Redis; over the same window the CPU time of the measured processes
(``utime + stime`` of ``/proc/<pid>/stat``, threads included; this process's own for the plain
consumer) gives the CPU time per record, which shared cores disturb far less than the rates. The
plain consumer runs twice and the faster run is the baseline (its first run may meet a broker still
settling the fill). The machine is noisy: compare numbers within one run. ``results`` (built at
the end, :func:`collect_results`) holds each headline ratio with its baseline from the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import redis  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, TopicPartition  # noqa: E402

from benchmarks.results import write_named_results  # noqa: E402
from benchmarks.run_scope import run_benchmark  # noqa: E402
from processors.devservices.base import ManagedProcess  # noqa: E402
from processors.devservices.redis_server import RedisServer  # noqa: E402
from processors.devservices.tansu import TansuBroker  # noqa: E402
from processors.devservices.worker_process import WorkerProcess  # noqa: E402
from processors.events.metadata import encode_batch  # noqa: E402
from processors.kafka import clients  # noqa: E402
from processors.kafka.config import KafkaConfig  # noqa: E402
from processors.kafka.topics import ensure_topics  # noqa: E402
from processors.replay.sample import SampleServer, metadata_record  # noqa: E402
from processors.settings import Settings  # noqa: E402
from processors.state.keys import KeySchema  # noqa: E402

BUILDS = ["15.2.2562.53", "15.2.2562.29", "15.2.1748.53", "15.1.2507.39", "15.0.1497.48", "14.3.513.0"]
# Event times an hour or two before the run: a fixed date drifts into the past, and once the
# servers' stage timelines (days long) had run out, every detected server became due for the timer at
# once, whose stage walk then competed with the batches being timed (p99 of seconds)
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    """One measured window: records processed, its wall-clock length and the CPU time the measured
    processes spent in it."""

    records: float
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_us_per_record(self) -> float:
        return self.cpu_seconds / self.records * 1e6


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) and of its living child processes."""
    total = 0.0
    for current in [pid, *child_pids(pid)]:
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    return total


def child_pids(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except FileNotFoundError:
            continue
    return [*found, *(grandchild for child in found for grandchild in child_pids(child))]


def cpu_of(processes: Sequence[ManagedProcess]) -> Callable[[], float]:
    """A function reading the CPU seconds the given started processes have used so far."""
    pids = [process.process.pid for process in processes if process.process is not None]
    return lambda: sum(process_cpu_seconds(pid) for pid in pids)


def settings_for(name: str, bootstrap: str, redis_url: str) -> Settings:
    settings = Settings.from_env({}, kafka_bootstrap=bootstrap, redis_url=redis_url,
                                 topic_metadata=f"{name}.metadata", topic_verdicts=f"{name}.verdicts",
                                 topic_notifications=f"{name}.notifications", topic_deadletter=f"{name}.deadletter",
                                 topic_commands=f"{name}.commands", consumer_group=f"{name}-group",
                                 key_prefix=f"bench-{name}", metadata_partitions=8, session_timeout_ms=6000,
                                 web_port=0, metrics_port=0, batch_max_messages=500,
                                 timer_interval_s=1.0)
    ensure_topics(settings)
    return settings


def server(index: int) -> SampleServer:
    return SampleServer(f"tenant{index % 20}", f"ex{index}.tenant{index % 20}.example", f"198.51.{index % 250}.7",
                        BUILDS[index % len(BUILDS)])


def fill(settings: Settings, envelopes: int, per_envelope: int, servers: int) -> int:
    """Produce ``envelopes`` Kafka messages of ``per_envelope`` records (1 = unbatched) from ``servers``
    servers in turn: the first message of each server is a first detection (verdict + notification),
    the rest is steady state. Returns the number of messages."""
    producer = clients.producer(settings.kafka, {"linger.ms": 20,
                                                 "partitioner": "murmur2_random", "compression.type": "lz4"})
    serial = 0
    for index in range(envelopes):
        srv = server(index % servers)
        records = []
        for _ in range(per_envelope):
            serial += 1
            records.append(metadata_record(srv, srv.build, T0 + timedelta(seconds=serial % 3600), serial))
        value = orjson.dumps(records[0]) if per_envelope == 1 else encode_batch(srv.server_key, records)
        while True:
            try:
                producer.produce(settings.topic_metadata, key=srv.server_key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)
    return envelopes


def final_offsets(*all_settings: Settings) -> list[dict[str, int]]:
    """Last offset per partition of each settings' metadata topic, found by reading (Tansu
    under-reports end offsets per batch), all topics in one read."""
    consumer = clients.consumer(all_settings[0].kafka, {"group.id": "bench-reader",
                                                        "enable.auto.commit": False, "log_level": 3})
    consumer.assign([TopicPartition(s.topic_metadata, p, OFFSET_BEGINNING)
                     for s in all_settings for p in range(s.metadata_partitions)])
    last: dict[str, dict[str, int]] = {s.topic_metadata: {} for s in all_settings}
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 2.0:
        for message in consumer.consume(1000, 0.2):
            topic = message.topic()
            if message.error() is None and topic is not None:
                last[topic][f"{topic}:{message.partition()}"] = int(message.offset() or 0)
                quiet_since = time.monotonic()
    consumer.close()
    return [last[s.topic_metadata] for s in all_settings]


def read_progress(client: redis.Redis, key: str) -> tuple[dict[str, int], dict[str, str]]:
    """The workers' progress marks: last processed offset per partition, and which worker processed it."""
    marks: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
    raw = {k.decode(): v.decode() for k, v in marks.items()}
    # offsets are the ``<topic>:<partition>`` fields; the others (owner:..., timer, policy) say other things
    offsets = {k: int(v) for k, v in raw.items() if not k.startswith("owner:") and k.rpartition(":")[2].isdigit()}
    return offsets, {k.removeprefix("owner:"): v for k, v in raw.items() if k.startswith("owner:")}


def time_until_done(client: redis.Redis, key: str, final: dict[str, int], timeout: float = 600,
                    cpu: Callable[[], float] | None = None) -> tuple[float, float]:
    """Seconds from the first progress mark to all partitions reaching ``final``, and the CPU seconds
    ``cpu`` counted meanwhile (0 without it)."""
    started = None
    cpu_start = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        marks, _ = read_progress(client, key)
        if marks and started is None:
            started = time.monotonic()
            cpu_start = cpu() if cpu else 0.0
        if started is not None and all(marks.get(f, -1) >= o for f, o in final.items()):
            return time.monotonic() - started, (cpu() - cpu_start) if cpu else 0.0
        time.sleep(0.002)
    raise RuntimeError(f"not done within {timeout}s: {marks} vs {final}")


def bench_plain(settings: Settings, records_per_message: int, name: str) -> Run:
    """A confluent-kafka consumer that only parses each message (this process's CPU time: librdkafka's
    threads and the parsing)."""
    consumer = clients.consumer(settings.kafka, {"group.id": name, "enable.auto.commit": False,
                                                 "log_level": 3, "fetch.max.bytes": 50_000_000})
    topic = settings.topic_metadata
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.metadata_partitions)])
    count, started, quiet_since = 0, None, time.monotonic()
    last = cpu_start = cpu_last = 0.0
    while time.monotonic() - quiet_since < 1.0:
        for message in consumer.consume(1000, 0.1):
            if message.error() is None:
                if started is None:
                    started, cpu_start = time.monotonic(), time.process_time()
                orjson.loads(message.value() or b"")
                count += 1
                last = quiet_since = time.monotonic()
                cpu_last = time.process_time()
    consumer.close()
    assert started is not None
    return Run(count * records_per_message, last - started, cpu_last - cpu_start)


def bench_faust_empty(settings: Settings, client: redis.Redis, final: dict[str, int], per: int) -> Run:
    key = f"bench-faust-{time.time_ns()}"
    env = {**os.environ, "BENCH_BOOTSTRAP": settings.kafka_bootstrap, "BENCH_TOPIC": settings.topic_metadata,
           "BENCH_PROGRESS_KEY": key, "BENCH_GROUP": f"faust-empty-{time.time_ns()}",
           "BENCH_REDIS_URL": settings.redis_url, "BENCH_DATA_DIR": tempfile.mkdtemp(prefix="faust-empty-")}
    process = ManagedProcess("faust-empty", [sys.executable, str(ROOT / "benchmarks/faust_empty.py"), "worker",
                                             "-l", "info"], env=env)
    process.start()
    try:
        partition_final = {f.rsplit(":", 1)[1]: o for f, o in final.items()}
        try:
            seconds, cpu = time_until_done(client, key, partition_final, timeout=120, cpu=cpu_of([process]))
        except RuntimeError:
            print(process.log_tail(60), file=sys.stderr)
            raise
    finally:
        process.stop()
    return Run(sum(o + 1 for o in final.values()) * per, seconds, cpu)


def bench_workers(settings: Settings, client: redis.Redis, final: dict[str, int], per: int, count: int) -> Run:
    workers = [WorkerProcess(settings, clock="wall", name=f"worker{i}") for i in range(count)]
    for worker in workers:
        worker.start()
    try:
        progress = KeySchema(settings.key_prefix).progress
        if count == 1:
            seconds, cpu = time_until_done(client, progress, final, cpu=cpu_of(workers))
            return Run(sum(o + 1 for o in final.values()) * per, seconds, cpu)
        messages, seconds, cpu = window_once_all_joined(client, progress, final, count, cpu_of(workers))
        return Run(messages * per, seconds, cpu)
    finally:
        for worker in workers:
            worker.stop()


class BacklogTooShort(RuntimeError):
    """The workers joined too far apart for the backlog: no window in which all of them were busy."""


def window_once_all_joined(client: redis.Redis, key: str, final: dict[str, int], count: int,
                           cpu: Callable[[], float], timeout: float = 600) -> tuple[int, float, float]:
    """Messages processed, seconds and CPU seconds of the group while all ``count`` workers are busy.

    Workers join the group at different moments and each join stops the group for a rebalance; the
    window opens once every worker has processed a batch (start-up excluded, as for one worker) and
    closes when the first worker has drained its partitions: from then on it idles while the other
    finishes its share of this finite backlog, which sustained traffic would not let happen.
    """
    deadline = time.monotonic() + timeout
    start: tuple[float, int, float] | None = None
    while time.monotonic() < deadline:
        offsets, owners = read_progress(client, key)
        done = sum(offsets.get(f, -1) + 1 for f in final)
        workers = set(owners.values())
        if start is None and len(workers) >= count:
            start = (time.monotonic(), done, cpu())
        drained = {w for w in workers
                   if all(offsets.get(f, -1) >= o for f, o in final.items() if owners.get(f) == w)}
        if start is not None and drained:
            if done - start[1] < sum(o + 1 for o in final.values()) / 4:
                raise BacklogTooShort("a worker drained its partitions too soon after the last join")
            return done - start[1], time.monotonic() - start[0], cpu() - start[2]
        if all(offsets.get(f, -1) >= o for f, o in final.items()):
            raise BacklogTooShort("the workers finished before all of them had joined")
        time.sleep(0.002)
    raise RuntimeError(f"not done within {timeout}s")


@dataclass(frozen=True)
class Latency:
    """Milliseconds (p50, p99) from producing an envelope to reading its verdict, and to the worker's
    producing it (the verdict's CreateTime: the part spent before the worker's publish)."""

    end_to_end: tuple[float, float]
    until_worker_publishes: tuple[float, float]
    samples: int
    rate: float  # records per second offered


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000


def bench_latency(bootstrap: str, redis_url: str, rate: float, duration: float, warmup: float) -> Latency:
    """Envelopes of 100 records at ``rate`` records/s; latency of the newly detected servers' verdicts.

    The first ``warmup`` seconds run the same traffic unmeasured (the broker's and the worker's
    first seconds at a new rate are not the steady state the target is about).
    """
    settings = settings_for("latency", bootstrap, redis_url)
    worker = WorkerProcess(settings, clock="wall")
    worker.start()
    try:
        return _measure_latency(settings, worker, redis_url, rate, duration, warmup)
    finally:
        worker.stop()


def _measure_latency(settings: Settings, worker: WorkerProcess, redis_url: str, rate: float,
                     duration: float, warmup: float) -> Latency:
    bootstrap = settings.kafka_bootstrap
    client = redis.Redis.from_url(redis_url)
    progress = KeySchema(settings.key_prefix).progress
    deadline = time.monotonic() + 60
    while not client.hexists(progress, "timer"):  # the worker is up and has the leader's timer
        assert time.monotonic() < deadline, "worker did not start"
        time.sleep(0.05)
    sent: dict[str, tuple[float, float]] = {}
    latencies: list[float] = []
    to_publish: list[float] = []
    # fetch.wait.max.ms 10: the reader must not add its own wait
    consumer = clients.consumer(KafkaConfig(bootstrap), {"group.id": "bench-latency", "log_level": 3,
                                                         "fetch.wait.max.ms": 10})
    consumer.assign([TopicPartition(settings.topic_verdicts, p, OFFSET_BEGINNING) for p in range(8)])
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            for message in consumer.consume(100, 0.05):
                raw_key = message.key()
                if message.error() is None and raw_key is not None:
                    key = raw_key.decode()
                    if key in sent:
                        sent_mono, sent_wall = sent[key]
                        latencies.append(time.monotonic() - sent_mono)
                        # the verdict's CreateTime is when the worker produced it: splits the latency
                        # into "in the worker" and "worker's producer -> broker -> reader"
                        to_publish.append(message.timestamp()[1] / 1000 - sent_wall)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    # configured like the edge publisher (lz4: envelopes of similar records shrink several times)
    producer = clients.producer(KafkaConfig(bootstrap), {"linger.ms": 1, "partitioner": "murmur2_random",
                                                         "compression.type": "lz4"})
    warmup_envelopes = int(rate * warmup / 100)
    envelopes = warmup_envelopes + int(rate * duration / 100)
    interval = 100 / rate

    def envelope(srv: SampleServer, index: int) -> bytes:
        records = [metadata_record(srv, srv.build, T0 + timedelta(seconds=i), index * 100 + i) for i in range(100)]
        return encode_batch(srv.server_key, records)

    # built before the clock starts, so the load generator does not take the worker's CPU:
    # steady traffic from 200 known servers (each server's envelope sent again and again) and,
    # every 10th envelope, one from a newly seen vulnerable server whose first detection must
    # reach the verdicts topic
    steady = [envelope(server(index), index) for index in range(200)]
    plan: list[tuple[str | None, bytes, bytes]] = []
    for index in range(envelopes):
        if index % 10 == 0:
            srv = SampleServer("latency", f"new{index}.latency.example", "198.51.100.9", "15.1.2507.39")
            plan.append((srv.server_key, srv.server_key.encode(), envelope(srv, index)))
        else:
            srv = server(index % 200)
            plan.append((None, srv.server_key.encode(), steady[index % 200]))
    new_servers = sum(1 for fresh, _, _ in plan[warmup_envelopes:] if fresh is not None)
    # make the 200 steady servers known (their first detections) before the clock starts
    for index, value in enumerate(steady):
        producer.produce(settings.topic_metadata, key=server(index).server_key.encode(), value=value)
    producer.flush(30)
    time_until_done(client, progress, final_offsets(settings)[0], timeout=120)
    begin = time.monotonic()
    for index, (fresh, key, value) in enumerate(plan):
        target = begin + index * interval
        while time.monotonic() < target:
            time.sleep(max(0.0, min(0.001, target - time.monotonic())))
        if fresh is not None and index >= warmup_envelopes:
            sent[fresh] = (time.monotonic(), time.time())
        producer.produce(settings.topic_metadata, key=key, value=value)
        producer.poll(0)
    producer.flush(30)
    wait_until = time.monotonic() + 30
    while len(latencies) < new_servers and time.monotonic() < wait_until:
        time.sleep(0.05)
    stop.set()
    reader.join()
    consumer.close()
    if not latencies:
        raise RuntimeError(f"no verdicts seen; worker log:\n{worker.log_tail(30)}")
    return Latency(percentiles(latencies), percentiles(to_publish), len(latencies), rate)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--envelopes", type=int, help="envelopes of 100 records (default 2000; 150 with --quick)")
    parser.add_argument("--pair-envelopes", type=int, help="envelopes for the two-worker run: both must have "
                                                           "joined well before the backlog is gone "
                                                           "(default 3 x --envelopes; 1200 with --quick)")
    parser.add_argument("--singles", type=int, help="unbatched records (default 20000; 1000 with --quick)")
    parser.add_argument("--servers", type=int, default=500, help="distinct servers in the traffic")
    parser.add_argument("--latency-seconds", type=float, help="measured phase of the latency run "
                                                              "(default 20; 2 with --quick)")
    parser.add_argument("--warmup-seconds", type=float, help="unmeasured traffic before it (default 3; 1 with --quick)")
    parser.add_argument("--broker", choices=["tansu", "apache"], default="tansu",
                        help="Tansu (in memory) or Apache Kafka 4 (jars fetched through Maven)")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that the benchmark runs")
    args = parser.parse_args()
    quick = args.quick
    args.envelopes = args.envelopes or (150 if quick else 2000)
    args.pair_envelopes = args.pair_envelopes or (1200 if quick else 3 * args.envelopes)
    args.singles = args.singles or (1000 if quick else 20000)
    args.latency_seconds = args.latency_seconds or (2.0 if quick else 20.0)
    args.warmup_seconds = args.warmup_seconds if args.warmup_seconds is not None else (1.0 if quick else 3.0)
    return args


PLAIN, PLAIN_AGAIN = "plain consumer, parse only (envelopes)", "plain consumer, parse only, second run"
FAUST_SINGLES, FAUST_ENVELOPES = "empty faust agent (unbatched)", "empty faust agent (envelopes of 100)"
WORKER_SINGLES, WORKER, PAIR = "worker, unbatched records", "worker, envelopes of 100", "two workers, envelopes of 100"
LATENCY_TARGET_MS = 250.0
# the targets per result: (comparison of the ratio, bound)
TARGETS = {"worker_vs_plain_consumer": (">=", 0.5), "two_workers_cpu_per_record": ("<=", 1.1),
           "latency_p99_at_half_load": ("<", 1.0)}


def main() -> int:
    args = parse_args()
    return run_benchmark("bench_worker", lambda: measure(args))


def measure(args: argparse.Namespace) -> int:
    if args.broker == "apache":
        from processors.devservices.apache_kafka import ApacheKafkaBroker

        broker: Any = ApacheKafkaBroker()
    else:
        broker = TansuBroker()
    store = RedisServer()
    try:
        broker.start()
        store.start()
        runs, latency = run_all(args, broker.bootstrap, store.url)
    finally:
        store.stop()
        broker.stop()
    print_runs(args, runs, latency)
    results = collect_results(runs, latency)
    print_results(results)
    targets = {name: f"{op} {bound:g}" for name, (op, bound) in TARGETS.items()}
    write_named_results("bench_worker", results, targets=targets)
    return 0


def run_all(args: argparse.Namespace, bootstrap: str, redis_url: str) -> tuple[dict[str, Run], Latency]:
    client = redis.Redis.from_url(redis_url)
    runs: dict[str, Run] = {}
    singles = settings_for("singles", bootstrap, redis_url)
    envelopes = settings_for("envelopes", bootstrap, redis_url)
    envelopes2 = settings_for("envelopes2", bootstrap, redis_url)
    print(f"filling: {args.singles} single records, {args.envelopes} x 100 records, {args.pair_envelopes} x 100 "
          f"records for two workers, {args.servers} servers ...", flush=True)
    fill(singles, args.singles, 1, args.servers)
    fill(envelopes, args.envelopes, 100, args.servers)
    fill(envelopes2, args.pair_envelopes, 100, args.servers)
    final_singles, final_env, final_env2 = final_offsets(singles, envelopes, envelopes2)

    phases: list[tuple[str, Callable[[], Run]]] = [
        (PLAIN, lambda: bench_plain(envelopes, 100, "bench-plain")),
        (PLAIN_AGAIN, lambda: bench_plain(envelopes, 100, "bench-plain-again")),
        (FAUST_SINGLES, lambda: bench_faust_empty(singles, client, final_singles, 1)),
        (FAUST_ENVELOPES, lambda: bench_faust_empty(envelopes, client, final_env, 100)),
        (WORKER_SINGLES, lambda: bench_workers(singles, client, final_singles, 1, 1)),
        (WORKER, lambda: bench_workers(envelopes, client, final_env, 100, 1)),
        (PAIR, lambda: bench_workers(envelopes2, client, final_env2, 100, 2)),
    ]
    for name, phase in phases:
        started = time.monotonic()
        try:
            runs[name] = phase()
        except BacklogTooShort as error:
            if not args.quick:
                raise BacklogTooShort(f"{error}: fill more envelopes (--pair-envelopes)") from None
            # a short run on a busy machine: the second worker's start-up can take longer than the backlog
            print(f"  {name}: no measurement ({error}; --quick sizes)", flush=True)
            continue
        print(f"  {name}: {runs[name].rate:,.0f} records/s ({time.monotonic() - started:.0f} s)", flush=True)
    latency = bench_latency(bootstrap, redis_url, runs[WORKER].rate / 2, args.latency_seconds, args.warmup_seconds)
    return runs, latency


def print_runs(args: argparse.Namespace, runs: dict[str, Run], latency: Latency) -> None:
    print(f"\non {args.broker} (one run, same machine, start-up excluded)")
    print(f"  {'':<42} {'records/s':>10} {'CPU us/record':>14}")
    for name, run in runs.items():
        print(f"  {name:<42} {run.rate:>10,.0f} {run.cpu_us_per_record:>14.1f}")
    (p50, p99), (worker50, worker99) = latency.end_to_end, latency.until_worker_publishes
    print(f"  latency event -> verdict read back, at {latency.rate:,.0f} records/s (half of one worker's rate, "
          f"after {args.warmup_seconds:g} s of warm-up): p50 {p50:.0f} ms, p99 {p99:.0f} ms over {latency.samples} "
          "new detections")
    print(f"    of which until the worker produces the verdict: p50 {worker50:.0f} ms, p99 {worker99:.0f} ms "
          "(the rest: acknowledgement, broker, the reader's fetch)")


def collect_results(runs: dict[str, Run], latency: Latency) -> dict[str, dict[str, Any]]:
    """The headline results, each ``{"value", "baseline" (its name), "baseline_value", "ratio", "unit"}``
    with its baseline from the same run. The plain consumer's baseline is the faster of its two runs.
    The latency's baseline is its target (250 ms): there is nothing to measure it against."""
    plain = max(runs[PLAIN], runs[PLAIN_AGAIN], key=lambda run: run.rate)
    one = runs[WORKER]
    results: dict[str, dict[str, Any]] = {}

    def add(name: str, value: float, baseline: tuple[str, float], unit: str) -> None:
        results[name] = {"value": value, "baseline": baseline[0], "baseline_value": baseline[1],
                         "ratio": value / baseline[1], "unit": unit}

    add("worker_vs_plain_consumer", one.rate, ("plain consumer", plain.rate), "records/s")
    add("worker_cpu_vs_plain_consumer", one.cpu_us_per_record, ("plain consumer", plain.cpu_us_per_record),
        "us CPU/record")
    add("empty_faust_vs_plain_consumer", runs[FAUST_ENVELOPES].rate, ("plain consumer", plain.rate), "records/s")
    add("worker_unbatched_vs_empty_faust", runs[WORKER_SINGLES].rate,
        ("empty Faust agent, single records", runs[FAUST_SINGLES].rate), "records/s")
    if PAIR in runs:
        add("two_workers_cpu_per_record", runs[PAIR].cpu_us_per_record, ("one worker", one.cpu_us_per_record),
            "us CPU/record")
        add("two_workers_throughput", runs[PAIR].rate, ("one worker", one.rate), "records/s")
    add("latency_p99_at_half_load", latency.end_to_end[1], ("target", LATENCY_TARGET_MS), "ms")
    return results


def print_results(results: dict[str, dict[str, Any]]) -> None:
    print("\nratios (value / baseline, both from this run)")
    for name, result in results.items():
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            comparison, bound = target
            met = {">=": result["ratio"] >= bound, "<=": result["ratio"] <= bound, "<": result["ratio"] < bound}
            verdict = f"  (target {comparison} {bound:g}: {'met' if met[comparison] else 'NOT met'})"
        print(f"  {name:<34} {result['ratio']:>6.2f}   {result['value']:>10,.1f} / {result['baseline_value']:>10,.1f} "
              f"{result['unit']}{verdict}")


if __name__ == "__main__":
    sys.exit(main())
