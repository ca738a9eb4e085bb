"""Where the worker publishes an outbox record: in the per-tenant topic mode a verdict goes to its
tenant's verdicts topic, ``<PATCHGATE_TOPIC_VERDICTS>.<tenant_id>``, and nowhere else, so a tenant's
edges read their own verdicts only (Kafka ACLs allow topics, not keys).

The route is decided when the record is published, from its outbox topic and Kafka key: the outbox
committed to Redis with the verdict keeps the topic it was committed for (the shared verdicts topic),
and :func:`publication_topic` is a pure function of that record and the settings. A record published
again (a crash between the broker's acknowledgement and the outbox release, then recovery or the
next batch) therefore goes to the same topic, and the recovery check reads the topic it went to: the
outbox's exactly-once design is unchanged. In the shared mode every record keeps its topic.
"""

from __future__ import annotations

import re

from processors.errors import PatchgateError
from processors.settings import TENANT_ID_PATTERN, Settings

_TENANT_ID = re.compile(TENANT_ID_PATTERN + r"\Z")


class UnroutableVerdict(PatchgateError):
    """A verdict whose key names no tenant, so no tenant topic can take it (a bug, never input)."""


def verdict_tenant(key: bytes | None) -> str:
    """The tenant of a verdict's Kafka key ``<tenant_id>/<server>``."""
    tenant, slash, server = (key or b"").partition(b"/")
    text = tenant.decode("ascii", "replace")
    if not slash or not server or not _TENANT_ID.match(text):
        raise UnroutableVerdict(f"verdict key {(key or b'')[:120]!r} names no tenant: expected '<tenant_id>/<server>'")
    return text


def publication_topic(settings: Settings, topic: str, key: bytes | None) -> str:
    """The topic an outbox record committed for ``topic`` is published to."""
    if topic != settings.topic_verdicts or not settings.per_tenant_topics:
        return topic
    return settings.tenant_verdicts_topic(verdict_tenant(key))
