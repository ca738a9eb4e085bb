"""One 3-node Apache Kafka KRaft cluster (combined broker+controller nodes) for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from processors.devservices.apache_kafka import ApacheKafkaCluster, fetch_jars
from processors.devservices.base import ServiceUnavailable


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[ApacheKafkaCluster]:
    try:
        fetch_jars()
        cluster = ApacheKafkaCluster(3, partitions=8)
        cluster.start()
    except ServiceUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    yield cluster
    cluster.close()
