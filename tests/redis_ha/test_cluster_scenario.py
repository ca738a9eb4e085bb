"""The 120-day scenario (and its kill -9 variant) through the real worker on a real three-master
Redis Cluster: every script and transaction touches one slot, so the results are the same as on
one server (``redis_url`` is the cluster here, see conftest)."""

from __future__ import annotations

import pytest

from tests.worker.test_scenario import (
    test_kill_9_mid_scenario_gives_the_same_result,
    test_sample_gives_exactly_the_expected_verdicts_and_notifications,
)

pytestmark = pytest.mark.integration

__all__ = ["test_kill_9_mid_scenario_gives_the_same_result",
           "test_sample_gives_exactly_the_expected_verdicts_and_notifications"]


def test_the_scenario_here_runs_on_the_cluster(redis_url: str) -> None:
    assert redis_url.startswith("redis+cluster://") and redis_url.count(",") == 2
