"""A real single-node Apache Kafka 4.x broker in KRaft mode, for tests and ``make demo``.

No Docker and no Kafka tarball: :func:`fetch_jars` asks Maven (``mvn``, from Maven Central only) to copy
``org.apache.kafka:kafka_2.13`` and all of its runtime dependencies, named in
``scripts/apache-kafka/pom.xml``, into ``.cache/apache-kafka/<version>/lib`` under the project root. It
does so once: a marker file in that folder says the copy is complete, and later calls return at once.
CI runs ``scripts/apache-kafka/fetch.sh`` before the tests so that test time is not spent on Maven.

:class:`ApacheKafkaBroker` formats a KRaft storage directory in a temporary folder and runs
``java -cp '<lib>/*' kafka.Kafka server.properties`` as one combined broker+controller (``node.id=1``)
with a PLAINTEXT listener on ``127.0.0.1:<port>`` and a CONTROLLER listener on another free port. It is
ready when a confluent-kafka ``AdminClient`` gets metadata that lists the broker, not merely when the
port opens. On this machine (2 cores) that takes about 2-3 s after the JVM starts.

The data directory lives as long as the object: :meth:`~ApacheKafkaBroker.stop`,
:meth:`~ApacheKafkaBroker.kill` and :meth:`~ApacheKafkaBroker.restart` keep it, so a later
:meth:`~ApacheKafkaBroker.start` comes back on the same ports with the same topics, records and
committed offsets (after a kill, Kafka recovers the logs as after a crash). :meth:`~ApacheKafkaBroker.close`
(or leaving the ``with`` block) stops the broker and deletes the folder.

Compaction: the log cleaner looks for work every second here (``log.cleaner.backoff.ms=1000``), but
it never touches the *active* (last) segment of a partition, and segment size/age are per-topic
settings. A test that wants to see compaction happen should create its topic with
``cleanup.policy=compact``, ``segment.ms=100``, ``min.cleanable.dirty.ratio=0.01`` (and
``delete.retention.ms=100`` for tombstones), then keep producing something to each partition after
``segment.ms`` has passed so that the segment holding the records to compact is rolled and becomes
cleanable, and poll until the condition holds.

Run by hand: ``python -m processors.devservices.apache_kafka fetch`` (only the jars) or
``python -m processors.devservices.apache_kafka serve [--port N]`` (a broker until Ctrl-C).

:class:`ApacheKafkaCluster` runs several such nodes (3 by default) as one KRaft cluster whose
controller quorum is all of them, for replication tests (a node killed while clients work).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from processors.devservices.base import ManagedProcess, ProcessService, ServiceUnavailable, free_port, tcp_answers

if TYPE_CHECKING:
    from processors.kafka.types import AdminClient

APACHE_KAFKA_VERSION = "4.4.0"

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POM = PROJECT_ROOT / "scripts" / "apache-kafka" / "pom.xml"
DEFAULT_CACHE_ROOT = PROJECT_ROOT / ".cache" / "apache-kafka"
MARKER = ".complete"

INSTALL_HINT = (
    "Apache Kafka needs a Java 17+ runtime and Maven to fetch its jars from Maven Central once: "
    "`apt-get install -y openjdk-17-jre-headless maven`, then `scripts/apache-kafka/fetch.sh`."
)

# A small heap: tests start one broker at a time on a 2-core machine.
JAVA_OPTS = (
    "-Xmx512m",
    "-Xms256m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

# Console output goes to the ManagedProcess log file. WARN keeps start-up quiet (at INFO Kafka prints
# every config value several times); the lines that show start, stop and the cleaner at work stay.
LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = INFO
logger.cleaner.name = org.apache.kafka.storage.internals.log.LogCleaner
logger.cleaner.level = INFO
logger.cleanerthread.name = org.apache.kafka.storage.internals.log.LogCleaner$CleanerThread
logger.cleanerthread.level = INFO
"""


def _run_mvn(mvn: str, outdir: Path) -> None:
    argv = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-Dkafka.version={APACHE_KAFKA_VERSION}", f"-DoutputDirectory={outdir}", "-DincludeScope=runtime",
    ]
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900,
                              check=False, cwd=PROJECT_ROOT)
    except subprocess.TimeoutExpired as exc:
        raise ServiceUnavailable(f"fetching Kafka jars with Maven timed out: {' '.join(argv)}") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stdout.decode(errors="replace").splitlines()[-30:])
        raise ServiceUnavailable(
            f"fetching Apache Kafka {APACHE_KAFKA_VERSION} jars with Maven failed "
            f"(exit {done.returncode}): {' '.join(argv)}\n{tail}\n{INSTALL_HINT}"
        )


def fetch_jars(cache_root: Path | None = None) -> Path:
    """The folder with the broker's jars, fetched through Maven on the first call.

    Safe to call from several processes at once (a file lock serialises the fetch). Raises
    :class:`ServiceUnavailable` with an install hint if ``java`` or ``mvn`` is missing or Maven fails.
    """
    version_dir = (cache_root or DEFAULT_CACHE_ROOT) / APACHE_KAFKA_VERSION
    lib = version_dir / "lib"
    if (lib / MARKER).is_file():
        return lib
    if _java() is None:
        raise ServiceUnavailable(f"no `java` on PATH (nor in $JAVA_HOME/bin). {INSTALL_HINT}")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceUnavailable(f"no `mvn` on PATH and no cached jars in {lib}. {INSTALL_HINT}")
    version_dir.mkdir(parents=True, exist_ok=True)
    with (version_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (lib / MARKER).is_file():  # another process fetched while we waited
            return lib
        partial = version_dir / "lib.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _run_mvn(mvn, partial)
        jars = sorted(p.name for p in partial.glob("*.jar"))
        if f"kafka_2.13-{APACHE_KAFKA_VERSION}.jar" not in jars:
            raise ServiceUnavailable(f"Maven left no kafka_2.13-{APACHE_KAFKA_VERSION}.jar in {partial}")
        listing = "".join(f"{jar}\n" for jar in jars)
        (partial / MARKER).write_text(f"org.apache.kafka:kafka_2.13:{APACHE_KAFKA_VERSION}\n{listing}")
        shutil.rmtree(lib, ignore_errors=True)
        partial.rename(lib)
    return lib


def _java() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


# Brokers run in their own session (a Ctrl-C must not reach them first), so they would outlive a test
# run that dies on an exception without cleaning up; at interpreter exit every one still running is stopped.
_LIVE: weakref.WeakSet[ApacheKafkaBroker] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for broker in list(_LIVE):
        broker.stop()


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64 without padding (as ``Uuid.randomUuid``)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # the storage tool would read it as an option
            return text


class ApacheKafkaBroker(ProcessService):
    """One Apache Kafka broker+controller process on loopback; see the module docstring.

    ``stop`` (clean, SIGKILL after 30 s), ``kill`` and ``restart`` keep the data folder; ``start``
    recovers it, on the same ports. ``close`` also deletes it.
    """

    kind = "apache"
    stop_timeout = 30.0

    def __init__(self, port: int | None = None, *, partitions: int = 8) -> None:
        self.port = port or free_port()
        controller_port = free_port()
        while controller_port == self.port:
            controller_port = free_port()
        self.controller_port = controller_port
        self.partitions = partitions
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.workdir: Path | None = None
        self.startup_seconds: float | None = None  # launch of the JVM until ready, last start
        self._process: ManagedProcess | None = None
        self._admin: AdminClient | None = None
        # set by ApacheKafkaCluster before the first start: its nodes share a cluster id and a quorum
        self.cluster_id: str | None = None
        self.extra_properties: dict[str, str] = {}
        # JVM options after JAVA_OPTS, e.g. Kafka's system properties
        # (-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=...)
        self.java_options: tuple[str, ...] = ()

    # -- files -----------------------------------------------------------------------------------
    def server_properties(self, log_dir: Path) -> str:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(log_dir),
            "num.partitions": str(self.partitions),
            "default.replication.factor": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            # after a kill the restarted broker may register only once its old session has expired
            # (default 9 s); heartbeats go to the controller in the same process, so 4 s is safe
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
            # the cleaner wakes every second; a 16 MiB dedupe map is plenty for tests and fits the heap
            "log.cleaner.backoff.ms": "1000",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "log.cleaner.threads": "1",
            # retention and segment deletion run soon after start, not after 30 s / 60 s
            "log.initial.task.delay.ms": "1000",
            "log.retention.check.interval.ms": "1000",
            "log.segment.delete.delay.ms": "1000",
            # a replay stamps each record with the simulated time it was sent at (CreateTime), which
            # may lie months after the machine's clock; Kafka 4 refuses records over 1 h ahead by default
            "log.message.timestamp.after.max.ms": str(2**63 - 1),
            **self.extra_properties,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _prepare(self, java: str, lib: Path) -> Path:
        """Create and format the work folder the first time; later starts reuse it (data kept)."""
        if self.workdir is not None and (self.workdir / "data" / "meta.properties").is_file():
            return self.workdir
        workdir = Path(tempfile.mkdtemp(prefix="patchgate-apache-kafka-"))
        (workdir / "server.properties").write_text(self.server_properties(workdir / "data"))
        (workdir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        argv = [java, "-Xmx256m", *self._log_opts(workdir), "-cp", str(lib / "*"), "kafka.tools.StorageTool",
                "format", "-t", self.cluster_id or _cluster_id(), "-c", str(workdir / "server.properties")]
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                                  check=False, cwd=workdir)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise ServiceUnavailable("formatting Kafka storage timed out") from exc
        if done.returncode != 0:
            shutil.rmtree(workdir, ignore_errors=True)
            output = done.stdout.decode(errors="replace")
            raise ServiceUnavailable(f"formatting Kafka storage failed (exit {done.returncode}):\n{output}")
        self.workdir = workdir
        return workdir

    @staticmethod
    def _log_opts(workdir: Path) -> list[str]:
        return [f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}"]

    # -- life cycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> None:
        """Format storage (first time only), start the broker and wait until it serves metadata."""
        if self.running:
            raise RuntimeError(f"Apache Kafka broker on {self.bootstrap} is already running")
        lib = fetch_jars()
        java = _java()
        if java is None:
            raise ServiceUnavailable(f"no `java` on PATH. {INSTALL_HINT}")
        workdir = self._prepare(java, lib)
        argv = [java, *JAVA_OPTS, *self.java_options, *self._log_opts(workdir), "-cp", str(lib / "*"),
                "kafka.Kafka", str(workdir / "server.properties")]
        if self._process is None or self._process.argv != argv:
            self._process = ManagedProcess("apache-kafka", argv, cwd=workdir)
        began = time.monotonic()
        self._process.start()
        _LIVE.add(self)
        try:
            self._process.wait_ready(self._answers_metadata, timeout)
        finally:
            self._admin = None
        self.startup_seconds = time.monotonic() - began

    def _answers_metadata(self) -> bool:
        if not tcp_answers("127.0.0.1", self.port):
            return False
        from processors.kafka import clients
        from processors.kafka.config import KafkaConfig
        from processors.kafka.types import KafkaException

        if self._admin is None:
            # log_level 0: librdkafka would print every refused connection while the broker starts
            self._admin = clients.admin(KafkaConfig(self.bootstrap), {"log_level": 0})
        try:
            metadata = self._admin.list_topics(timeout=2.0)
        except KafkaException:
            return False
        return len(metadata.brokers) >= 1

    @property
    def running(self) -> bool:
        process = self._process.process if self._process else None
        return process is not None and process.poll() is None

    @property
    def log_path(self) -> Path | None:
        return self._process.log_path if self._process else None

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines) if self._process else "(not started)"

    def close(self) -> None:
        """Stop the broker and delete its data and log folders."""
        self.stop()
        if self._process is not None:
            self._process.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> ApacheKafkaBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ApacheKafkaCluster:
    """``size`` combined broker+controller nodes (a controller quorum of all of them) on loopback.

    Internal topics (consumer offsets, transactions) are replicated to every node with
    ``min.insync.replicas`` one less, so that the group's offsets survive the loss of a node; topics
    get the brokers' default ``min.insync.replicas`` (1) unless created with their own. ``kill(i)``
    SIGKILLs one node (a crash), ``start_node(i)`` brings it back on its ports and data.
    """

    def __init__(self, size: int = 3, *, partitions: int = 8) -> None:
        self.nodes: list[ApacheKafkaBroker] = []
        taken: set[int] = set()
        while len(self.nodes) < size:
            node = ApacheKafkaBroker(partitions=partitions)
            if {node.port, node.controller_port} & taken:
                continue  # the OS handed out a port again: pick others
            taken |= {node.port, node.controller_port}
            self.nodes.append(node)
        voters = ",".join(f"{index}@127.0.0.1:{node.controller_port}" for index, node in enumerate(self.nodes, 1))
        cluster_id = _cluster_id()
        replicas, min_isr = str(size), str(max(1, size - 1))
        for index, node in enumerate(self.nodes, 1):
            node.cluster_id = cluster_id
            node.extra_properties = {
                "node.id": str(index), "controller.quorum.voters": voters,
                "default.replication.factor": replicas, "offsets.topic.replication.factor": replicas,
                "transaction.state.log.replication.factor": replicas, "transaction.state.log.min.isr": min_isr,
                "share.coordinator.state.topic.replication.factor": replicas,
                "share.coordinator.state.topic.min.isr": min_isr,
            }
        self.bootstrap = ",".join(node.bootstrap for node in self.nodes)
        self.startup_seconds: float | None = None

    def start(self, timeout: float = 120.0) -> None:
        """Start every node at once (a quorum forms only when most run) and wait until all are brokers."""
        began = time.monotonic()
        failures: list[BaseException] = []

        def start_node(node: ApacheKafkaBroker) -> None:
            try:
                node.start(timeout)
            except BaseException as error:  # reported below, from the caller's thread
                failures.append(error)

        threads = [threading.Thread(target=start_node, args=(node,), daemon=True) for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout + 10)
        if failures or any(thread.is_alive() for thread in threads):
            self.close()
            raise ServiceUnavailable(f"Apache Kafka cluster did not start: {failures[0] if failures else 'timeout'}")
        self._wait_for_brokers(len(self.nodes), timeout)
        self.startup_seconds = time.monotonic() - began

    def _wait_for_brokers(self, count: int, timeout: float) -> None:
        from processors.kafka import clients
        from processors.kafka.config import KafkaConfig
        from processors.kafka.types import KafkaException

        admin = clients.admin(KafkaConfig(self.bootstrap), {"log_level": 0})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(KafkaException):
                if len(admin.list_topics(timeout=2.0).brokers) >= count:
                    return
            time.sleep(0.1)  # polling the cluster's metadata
        raise ServiceUnavailable(f"Apache Kafka cluster: fewer than {count} brokers registered in {timeout:.0f}s")

    def kill(self, index: int) -> None:
        """SIGKILL one node, as a crash would; its data stays."""
        self.nodes[index].kill()

    def start_node(self, index: int, timeout: float = 90.0) -> None:
        self.nodes[index].start(timeout)

    def close(self) -> None:
        """Kill every node (their data is deleted: a clean shutdown would only cost time) and delete it."""
        for node in self.nodes:
            node.kill()
        for node in self.nodes:
            node.close()

    def __enter__(self) -> ApacheKafkaCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m processors.devservices.apache_kafka")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="fetch the jars into the cache and print their folder")
    serve = sub.add_parser("serve", help="run a broker until Ctrl-C")
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch_jars())
            return 0
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        with ApacheKafkaBroker(args.port, partitions=args.partitions) as broker:
            print(f"Apache Kafka {APACHE_KAFKA_VERSION} ready on {broker.bootstrap} "
                  f"after {broker.startup_seconds:.1f}s; log: {broker.log_path}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while not stopping.wait(1.0):
                    if not broker.running:
                        print(broker.log_tail(), file=sys.stderr)
                        return 1
        return 0
    except ServiceUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
