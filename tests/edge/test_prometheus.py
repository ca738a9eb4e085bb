"""The edge's Prometheus view: its plain counters and the cache state, read at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from edge.milter.app import MilterMetrics
from edge.prometheus import EdgeCollector
from edge.verdicts import VerdictIndex
from tests.edge.helpers import verdict_bytes

SHARED = {"topic": "patchgate.verdicts"}


def test_counters_and_cache_state_are_exported_when_scraped() -> None:
    cache = VerdictIndex()
    milter = MilterMetrics()
    registry = CollectorRegistry()
    registry.register(EdgeCollector(cache, {"milter": milter, "cache": cache.metrics}, topic="patchgate.verdicts"))
    assert registry.get_sample_value("patchgate_edge_cache_caught_up", SHARED) == 0  # fails open: and says so
    assert registry.get_sample_value("patchgate_edge_cache_verdicts", SHARED) == 0

    assert cache.apply_raw(b"contoso/ex01.contoso.com", verdict_bytes())
    cache.caught_up = True
    milter.throttled += 2  # what the SMTP path does: plain increments, no metrics library call
    text = generate_latest(registry).decode()
    assert 'patchgate_edge_cache_caught_up{topic="patchgate.verdicts"} 1.0' in text
    assert 'patchgate_edge_cache_verdicts{topic="patchgate.verdicts"} 1.0' in text
    assert 'patchgate_edge_events_total{component="milter",counter="throttled"} 2.0' in text
    assert registry.get_sample_value("patchgate_edge_events_total",
                                     {"component": "cache", "counter": "verdicts_applied"}) == 1


def test_the_cache_gauges_name_the_one_topic_the_edge_follows() -> None:
    """Per-tenant mode: the tenant's verdicts topic is the label, one series per gauge (the stale alert
    joins it with the workers' ``patchgate_events_out_total{topic}``); the counters keep their labels."""
    cache = VerdictIndex()
    registry = CollectorRegistry()
    registry.register(EdgeCollector(cache, {"cache": cache.metrics}, topic="patchgate.verdicts.contoso"))
    samples = {(metric.name, sample.name): sample.labels for metric in registry.collect()
               for sample in metric.samples if metric.name.startswith("patchgate_edge_cache")}
    assert samples == {
        ("patchgate_edge_cache_caught_up", "patchgate_edge_cache_caught_up"): {"topic": "patchgate.verdicts.contoso"},
        ("patchgate_edge_cache_verdicts", "patchgate_edge_cache_verdicts"): {"topic": "patchgate.verdicts.contoso"},
    }
    counters = [sample.labels for metric in registry.collect() if metric.name == "patchgate_edge_events"
                for sample in metric.samples]
    assert counters and all(set(labels) == {"component", "counter"} for labels in counters)
