"""Fixtures of the Redis high-availability tests: here ``redis_url`` is the session's real Redis
Cluster, so the worker tests imported into this package run against the cluster."""

from __future__ import annotations

import pytest

from tests.worker.conftest import settings, worker

__all__ = ["settings", "worker"]


@pytest.fixture(scope="session")
def redis_url(redis_cluster_url: str) -> str:
    return redis_cluster_url
