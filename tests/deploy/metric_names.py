"""The metric names patchgate exposes, collected from the code's own registries (no list to keep).

processors.metrics.REGISTRY holds the worker's, API's and notifier's metrics (the API server's own
counters register there on import); the edge's come from :class:`edge.prometheus.EdgeCollector`,
collected here over an empty cache. ``up`` is Prometheus' own. Edge counter label values are the
fields of the edge's counter dataclasses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                   "summary": ("", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}
NAME = re.compile(r"\b(patchgate_[a-z0-9_]+|up)\b")


def _sample_names(families: Iterable[Any]) -> set[str]:
    names = set()
    for family in families:
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def exposed_metric_names() -> set[str]:
    import processors.api.server  # noqa: F401  (registers the API server's counters)
    from edge.prometheus import EdgeCollector
    from edge.verdicts import VerdictIndex
    from processors.metrics import REGISTRY

    edge = EdgeCollector(VerdictIndex(), {}, topic="patchgate.verdicts")
    return {"up"} | _sample_names(REGISTRY.collect()) | _sample_names(edge.collect())


def edge_counter_names() -> set[str]:
    from edge.listeners import ListenerMetrics
    from edge.milter.app import MilterMetrics
    from edge.milter.server import ServerMetrics
    from edge.policy.server import PolicyMetrics
    from edge.publisher import PublisherMetrics
    from edge.verdicts import CacheMetrics

    classes = (ListenerMetrics, MilterMetrics, ServerMetrics, PolicyMetrics, PublisherMetrics, CacheMetrics)
    return {field.name for cls in classes for field in fields(cls)}


def unknown_names(expressions: Iterable[str]) -> set[str]:
    """Metric names used in ``expressions`` that no patchgate component exposes."""
    known = exposed_metric_names()
    return {name for expr in expressions for name in NAME.findall(expr) if name not in known}


def unknown_edge_counters(expressions: Iterable[str]) -> set[str]:
    """``counter`` matcher values (each alternative of a regex) that match no edge counter field."""
    known = edge_counter_names()
    unknown = set()
    for expr in expressions:
        for _, pattern in re.findall(r'counter(=~|=)"([^"]*)"', expr):
            for alternative in pattern.split("|"):
                if not any(re.fullmatch(alternative, name) for name in known):
                    unknown.add(alternative)
    return unknown
