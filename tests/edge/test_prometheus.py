"""The edge's Prometheus view: its plain counters and the cache state, read at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from edge.milter.app import MilterMetrics
from edge.prometheus import EdgeCollector
from edge.verdicts import VerdictIndex
from tests.edge.helpers import verdict_bytes


def test_counters_and_cache_state_are_exported_when_scraped() -> None:
    cache = VerdictIndex()
    milter = MilterMetrics()
    registry = CollectorRegistry()
    registry.register(EdgeCollector(cache, {"milter": milter, "cache": cache.metrics}))
    assert registry.get_sample_value("patchgate_edge_cache_caught_up") == 0  # fails open: and says so
    assert registry.get_sample_value("patchgate_edge_cache_verdicts") == 0

    assert cache.apply_raw(b"contoso/ex01.contoso.com", verdict_bytes())
    cache.caught_up = True
    milter.throttled += 2  # what the SMTP path does: plain increments, no metrics library call
    text = generate_latest(registry).decode()
    assert "patchgate_edge_cache_caught_up 1.0" in text and "patchgate_edge_cache_verdicts 1.0" in text
    assert 'patchgate_edge_events_total{component="milter",counter="throttled"} 2.0' in text
    assert registry.get_sample_value("patchgate_edge_events_total",
                                     {"component": "cache", "counter": "verdicts_applied"}) == 1
