"""Readiness probes shared by the local services."""

from __future__ import annotations

from processors.devservices.base import tcp_answers


def kafka_metadata_ready(bootstrap: str, timeout: float = 2.0) -> bool:
    """True once the broker answers a metadata request naming at least one broker."""
    host, _, port = bootstrap.rpartition(":")
    if not tcp_answers(host, int(port)):
        return False
    from processors.kafka import clients
    from processors.kafka.config import KafkaConfig

    admin = clients.admin(KafkaConfig(bootstrap), {"log_level": 0})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception:
        return False
    return bool(metadata.brokers)
