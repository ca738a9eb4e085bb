"""Prometheus metrics shared by the worker, the edge, the API and the webhook notifier.

Every metric lives in :data:`REGISTRY` (not the client library's global registry), so importing this
module twice or in tests never registers a name twice, and an exposition server shows only
patchgate's metrics plus the process collector. Label values must come from small closed sets:
topic names, the status/action enums of the contracts, a dead-letter *category* (see
:func:`reason_label`) - never a server name, tenant id or free text.

===================================  =========  =====================  =========================================
Metric                               Type       Labels                 Meaning
===================================  =========  =====================  =========================================
patchgate_events_in_total            counter    topic                  Kafka records consumed
patchgate_events_out_total           counter    topic                  Kafka records produced (acknowledged)
patchgate_deadletter_total           counter    reason                 records dead-lettered, by category
patchgate_server_key_mismatch_total  counter    -                      records whose headers name another server
                                                                       than their Kafka key (kept under the
                                                                       server the headers name, same tenant)
patchgate_context_dropped_total      counter    field                  HELO / PTR names that are no host name,
                                                                       dropped from a record that was kept
patchgate_classifications_total      counter    status                 classified messages by status
patchgate_verdicts_total             counter    action                 verdicts committed: report / throttle /
                                                                       block / paused / remediated
patchgate_redis_seconds              histogram  operation              one Redis round trip (pipeline, script)
patchgate_batch_size                 histogram  kind                   messages / records / servers per batch
patchgate_consumer_lag               gauge      topic, partition       the group's lag: high watermark minus its
                                                                       committed offset (each worker measures
                                                                       every partition, see kafka/lag.py); the
                                                                       per-tenant topics summed as one series
                                                                       topic="<metadata>.*", partition="all"
patchgate_tenant_topic_lag           gauge      topic                  the lag of the (at most 10) per-tenant
                                                                       metadata topics with the most lag
patchgate_consumer_lag_errors_total  counter    scope                  lag measurements that failed: a whole
                                                                       run, or one topic left out of a run
patchgate_outbox_claims              gauge      -                      outbox claims whose records wait for the
                                                                       broker's acknowledgement
patchgate_outbox_claim_age_seconds   gauge      -                      age of the oldest such claim (0: none;
                                                                       every worker measures, see
                                                                       worker/outbox_backlog.py)
patchgate_edge_cache_caught_up       gauge      -                      1 once the edge's verdict cache has read
                                                                       the verdicts topic to its end, else 0
patchgate_edge_cache_verdicts        gauge      -                      verdicts held by the edge's cache
patchgate_edge_events_total          counter    component, counter     the edge's counters (milter, server,
                                                                       cache, publisher, policy)
patchgate_api_requests_total         counter    route, method, status  HTTP API requests
patchgate_webhook_deliveries_total   counter    outcome                delivered / duplicate / retry /
                                                                       dead_letter / no_webhook / permanent
patchgate_policy_reloads_total       counter    outcome                policy/catalog file changes: applied /
                                                                       rejected (invalid: the version in force
                                                                       stays); unreadable: checks that could not
                                                                       stat them (worker and API, see
                                                                       processors/policyfile.py)
patchgate_policy_stale               gauge      kind                   1 while the watched policy (and catalog)
                                                                       files on disk are not the version in
                                                                       force: their last change was rejected or
                                                                       they cannot be read; 0 once one loads
===================================  =========  =====================  =========================================

:mod:`processors.probes` adds, in the same registry, ``patchgate_build_info{version}`` (1),
``patchgate_ready{condition}`` (1 while that readiness condition holds) and
``patchgate_probe_connections_refused_total`` (probe/scrape connections closed: too many open).
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

EVENTS_IN = Counter("patchgate_events_in_total", "Kafka records consumed, by topic", ["topic"], registry=REGISTRY)
EVENTS_OUT = Counter("patchgate_events_out_total", "Kafka records produced and acknowledged, by topic", ["topic"],
                     registry=REGISTRY)
DEAD_LETTERS = Counter("patchgate_deadletter_total", "Records sent to the dead-letter topic, by reason category",
                       ["reason"], registry=REGISTRY)
SERVER_KEY_MISMATCHES = Counter(
    "patchgate_server_key_mismatch_total",
    "Records whose headers name another server than their Kafka key (processed under the headers' server, "
    "within the key's tenant)", registry=REGISTRY)
CONTEXT_DROPPED = Counter("patchgate_context_dropped_total",
                          "Context fields (helo, ptr) that were no valid host name and were dropped from a kept record",
                          ["field"], registry=REGISTRY)
CLASSIFICATIONS = Counter("patchgate_classifications_total", "Classified messages, by classification status",
                          ["status"], registry=REGISTRY)
VERDICTS = Counter("patchgate_verdicts_total",
                   "Verdicts committed, by action (report, throttle, block, paused, remediated)", ["action"],
                   registry=REGISTRY)
REDIS_SECONDS = Histogram(
    "patchgate_redis_seconds", "Duration of one Redis round trip (a pipeline or script call)", ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "patchgate_batch_size", "Items per processing batch, by kind (messages, records, servers)", ["kind"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000), registry=REGISTRY,
)
CONSUMER_LAG = Gauge("patchgate_consumer_lag", "The consumer group's lag: high watermark minus committed offset",
                     ["topic", "partition"], registry=REGISTRY)
TENANT_TOPIC_LAG = Gauge("patchgate_tenant_topic_lag",
                         "The consumer group's lag on the per-tenant metadata topics with the most lag (at most 10)",
                         ["topic"], registry=REGISTRY)
CONSUMER_LAG_FAILURES = Counter("patchgate_consumer_lag_errors_total",
                                "Consumer lag measurements that failed, by scope (run: all of it, topic: one topic)",
                                ["scope"], registry=REGISTRY)
OUTBOX_CLAIMS = Gauge("patchgate_outbox_claims",
                      "Outbox claims (server or tenant) whose records wait for the broker's acknowledgement",
                      registry=REGISTRY)
OUTBOX_OLDEST_CLAIM = Gauge("patchgate_outbox_claim_age_seconds",
                            "Age of the oldest outbox claim still waiting for the broker's acknowledgement (0: none)",
                            registry=REGISTRY)
API_REQUESTS = Counter("patchgate_api_requests_total", "HTTP API requests, by route template, method and status",
                       ["route", "method", "status"], registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter("patchgate_webhook_deliveries_total",
                             "Webhook delivery attempts and results, by outcome", ["outcome"], registry=REGISTRY)
POLICY_RELOADS = Counter("patchgate_policy_reloads_total",
                         "Policy/catalog file changes, by outcome: applied, rejected (the version in force stays); "
                         "unreadable: checks that could not stat them", ["outcome"], registry=REGISTRY)

POLICY_STALE = Gauge("patchgate_policy_stale",
                     "1 while the watched policy/catalog files on disk are not the version in force (their last "
                     "change was rejected, or they cannot be read), by kind of files; 0 once they load",
                     ["kind"], registry=REGISTRY)

_CATEGORY = re.compile(r"[^a-z0-9_]+")


def reason_label(reason: str, limit: int = 40) -> str:
    """A bounded label value from a dead-letter reason: the text before the first ':' (snake_case)."""
    head = reason.split(":", 1)[0].strip().lower()
    return _CATEGORY.sub("_", head).strip("_")[:limit] or "other"


def start_metrics_server(port: int, addr: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` (Prometheus text format) from a daemon thread; returns the server object.

    ``port=0`` lets the OS choose; the bound port is ``server.server_port``. Call
    ``server.shutdown()`` to stop it.
    """
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return server


def exposition() -> tuple[bytes, str]:
    """The current metrics in text format and its content type (for an existing HTTP server)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
