"""Which topics the lag probe measures, and how the tenant topics' lag becomes bounded series."""

from __future__ import annotations

import pytest

from processors.kafka.config import KafkaConfig
from processors.kafka.lag import (
    TENANT_TOPICS_SHOWN,
    ConsumerLag,
    Deadline,
    LagTopics,
    LagUnmeasurable,
    lag_topics,
    most_lagging,
    tenant_topics_label,
)
from processors.metrics import REGISTRY
from processors.settings import Settings

PRESENT = {"patchgate.metadata", "patchgate.metadata.contoso", "patchgate.metadata.fabrikam",
           "patchgate.metadata.bad/name", "patchgate.metadata.a.b", "patchgate.metadataX.contoso",
           "patchgate.verdicts.contoso", "xpatchgate.metadata.contoso", "patchgate.metadata."}


def per_tenant(**overrides: str) -> Settings:
    return Settings.from_env({}, **{"metadata_topic_mode": "per-tenant", **overrides})


def test_the_shared_mode_measures_the_shared_topic_only() -> None:
    assert lag_topics("patchgate.metadata", None, PRESENT) == LagTopics("patchgate.metadata")
    assert lag_topics("patchgate.metadata", None, PRESENT).names == ["patchgate.metadata"]


def test_the_per_tenant_mode_adds_every_topic_the_worker_subscribes_to_by_pattern() -> None:
    settings = per_tenant()
    topics = lag_topics(settings.topic_metadata, settings.metadata_topic_pattern, PRESENT)
    assert topics.tenants == ("patchgate.metadata.a.b", "patchgate.metadata.contoso", "patchgate.metadata.fabrikam")
    assert topics.names[0] == "patchgate.metadata"  # the shared topic stays subscribed, so measured


def test_the_tenant_pattern_narrows_the_measured_topics_as_it_narrows_the_subscription() -> None:
    settings = per_tenant(metadata_tenant_pattern="contoso|northwind")
    topics = lag_topics(settings.topic_metadata, settings.metadata_topic_pattern, PRESENT)
    assert topics.tenants == ("patchgate.metadata.contoso",)
    assert lag_topics(settings.topic_metadata, settings.metadata_topic_pattern, {"patchgate.metadata"}).tenants == ()


def test_the_tenant_series_label_and_the_breakdown_bound() -> None:
    assert tenant_topics_label("patchgate.metadata") == "patchgate.metadata.*"
    lags = {f"t.{i:03d}": i for i in range(50)}
    shown = most_lagging(lags)
    assert list(shown) == [f"t.{i:03d}" for i in range(49, 49 - TENANT_TOPICS_SHOWN, -1)]
    assert most_lagging({"t.b": 5, "t.a": 5, "t.c": 0}) == {"t.a": 5, "t.b": 5}  # ties by name, no zeros
    assert most_lagging({"t.a": 0}) == {}


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_the_breakdown_drops_topics_that_leave_the_top() -> None:
    probe = ConsumerLag(KafkaConfig("127.0.0.1:1"), "g", "unit.metadata", tenant_pattern=r"^unit\.metadata\.(.+)$")
    lags = {f"unit.metadata.t{i:02d}": 100 + i for i in range(TENANT_TOPICS_SHOWN + 2)}
    probe.export_tenant_lag(lags)
    assert gauge("patchgate_consumer_lag", topic="unit.metadata.*", partition="all") == sum(lags.values())
    assert gauge("patchgate_tenant_topic_lag", topic="unit.metadata.t11") == 111
    assert gauge("patchgate_tenant_topic_lag", topic="unit.metadata.t01") is None  # beyond the top 10
    probe.export_tenant_lag({"unit.metadata.t01": 3, "unit.metadata.t11": 0})
    assert gauge("patchgate_consumer_lag", topic="unit.metadata.*", partition="all") == 3
    assert gauge("patchgate_tenant_topic_lag", topic="unit.metadata.t01") == 3
    assert gauge("patchgate_tenant_topic_lag", topic="unit.metadata.t11") is None  # caught up: no series
    assert gauge("patchgate_tenant_topic_lag", topic="unit.metadata.t05") is None


def test_a_run_that_measures_no_topic_fails_as_one_not_per_topic() -> None:
    probe = ConsumerLag(KafkaConfig("127.0.0.1:1"), "g", "unit.metadata")
    before = gauge("patchgate_consumer_lag_errors_total", scope="topic") or 0.0
    with pytest.raises(LagUnmeasurable, match=r"any of 2 topic\(s\) \(unit\.metadata: cannot describe it: not found\)"):
        probe.measure_topics(["unit.metadata", "unit.metadata.gone"], {}, Deadline(5))
    assert (gauge("patchgate_consumer_lag_errors_total", scope="topic") or 0.0) == before


def test_a_spent_deadline_stops_the_run() -> None:
    with pytest.raises(LagUnmeasurable, match="ran out of time"):
        Deadline(-1).left()
