"""Prometheus view of the edge: the plain counters the edge keeps, read only when scraped.

The SMTP path only increments integers in small dataclasses (``MilterMetrics``, ``CacheMetrics``,
``PublisherMetrics``, ``PolicyMetrics``, ``ServerMetrics``); this collector turns them into
``patchgate_edge_events_total{component, counter}`` at scrape time, next to the verdict cache's
``patchgate_edge_cache_caught_up{topic}`` and ``patchgate_edge_cache_verdicts{topic}``. Label values
are the dataclasses' field names, a closed set; ``topic`` is the verdicts topic the edge follows (one
per edge: ``<PATCHGATE_TOPIC_VERDICTS>.<tenant>`` in the per-tenant topic mode), which the
stale-cache alert joins with the workers' ``patchgate_events_out_total{topic}``. The supervised
background threads (publisher, verdict follower) appear as ``patchgate_edge_thread_alive{thread}``
(1 while the thread's loop runs) and ``patchgate_edge_thread_restarts_total{thread}`` (restarts
after an unexpected exception). Shadow mode: ``patchgate_edge_shadow_replies_total{code}`` (replies
withheld, accepted instead) and ``patchgate_edge_shadow_log_suppressed_total`` (their log lines
left out, :mod:`edge.shadow`). Served by ``patchgate edge milter|policy --metrics-port`` next to
``/livez`` and ``/readyz`` (:mod:`processors.probes`): the edge is ready once its verdict cache has
caught up and while its background threads run (:func:`watch_edge`). A broker that goes away later
does not make it unready: the edge keeps deciding from the verdicts it holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.supervision import SupervisedThread
from edge.verdicts import VerdictIndex
from processors.probes import Probes


class EdgeCollector(Collector):
    def __init__(self, cache: VerdictIndex, counters: Mapping[str, Any],
                 threads: Mapping[str, SupervisedThread] | None = None, *, topic: str) -> None:
        self.cache = cache
        self.topic = topic  # the verdicts topic (or, for an operator's tool, topic pattern) the cache follows
        self.counters = dict(counters)  # component name -> counters dataclass
        self.threads = dict(threads or {})  # thread label -> supervised thread

    def collect(self) -> Iterator[Metric]:
        caught_up = GaugeMetricFamily("patchgate_edge_cache_caught_up",
                                      "1 once the verdict cache has read the verdicts topic to its end (until "
                                      "then the edge fails open), else 0; topic: the verdicts topic it follows",
                                      labels=["topic"])
        caught_up.add_metric([self.topic], 1 if self.cache.caught_up else 0)
        yield caught_up
        verdicts = GaugeMetricFamily("patchgate_edge_cache_verdicts",
                                     "Verdicts held by the edge's verdict cache, by the verdicts topic it follows",
                                     labels=["topic"])
        verdicts.add_metric([self.topic], len(self.cache))
        yield verdicts
        family = CounterMetricFamily("patchgate_edge_events", "The edge's counters, by component and counter",
                                     labels=["component", "counter"])
        for component, counters in self.counters.items():
            for name, value in asdict(counters).items():
                family.add_metric([component, name], value)
        yield family
        alive = GaugeMetricFamily("patchgate_edge_thread_alive",
                                  "1 while the edge background thread's loop runs, else 0", labels=["thread"])
        restarts = CounterMetricFamily("patchgate_edge_thread_restarts",
                                       "Restarts of an edge background thread after an unexpected exception",
                                       labels=["thread"])
        for name, thread in self.threads.items():
            alive.add_metric([name], 1 if thread.alive else 0)
            restarts.add_metric([name], thread.restarts)
        yield alive
        yield restarts
        yield from self._shadow()

    def _shadow(self) -> Iterator[Metric]:
        shadow = self.cache.shadow
        replies = CounterMetricFamily("patchgate_edge_shadow_replies",
                                      "Replies a verdict in shadow mode withheld (the message was accepted), "
                                      "by the reply's code", labels=["code"])
        for code, count in sorted(shadow.replies.items()):
            replies.add_metric([code], count)
        yield replies
        yield CounterMetricFamily("patchgate_edge_shadow_log_suppressed",
                                  "Withheld shadow-mode replies not logged (one line per server per minute, "
                                  "100 lines a minute in all)", value=shadow.log_suppressed)


def watch_edge(probes: Probes, cache: VerdictIndex, threads: Mapping[str, SupervisedThread],
               stop: asyncio.Event) -> None:
    """Readiness of the edge: ``verdict_cache`` caught up, ``threads`` (each supervised thread) alive."""

    async def cache_caught_up() -> str | None:
        return None if cache.caught_up else "the verdict cache has not read the verdicts topic to its end"

    async def threads_alive() -> str | None:
        dead = sorted(name for name, thread in threads.items() if not thread.alive)
        return f"background thread(s) not running: {', '.join(dead)}" if dead else None

    probes.watch("verdict_cache", cache_caught_up, stop, interval=0.5)
    probes.watch("threads", threads_alive, stop, interval=0.5)
