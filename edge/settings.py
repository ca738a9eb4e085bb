"""The edge processes' settings: one frozen, validated object, read like every component's settings
(:mod:`processors.settings`). A command-line option, when given, wins over its variable.

=====================================  ================================  ==========================================
Environment variable                   Default                           Meaning
=====================================  ================================  ==========================================
PATCHGATE_KAFKA_BOOTSTRAP              127.0.0.1:9092                    Kafka bootstrap servers (``--bootstrap``)
PATCHGATE_KAFKA_CONFIG                 (none)                            Kafka client properties file (SASL/TLS)
PATCHGATE_TOPIC_VERDICTS               patchgate.verdicts                the compacted verdicts topic
PATCHGATE_TOPIC_METADATA               patchgate.metadata                where the milter publishes metadata
PATCHGATE_METADATA_TOPIC_MODE          shared                            ``per-tenant``: the edge serves the one
                                                                         tenant its config's connectors name,
                                                                         publishes to ``<TOPIC_METADATA>.<tenant>``
                                                                         and follows ``<TOPIC_VERDICTS>.<tenant>``
                                                                         only (the worker's variable)
PATCHGATE_EDGE_CONFIG                  (required: milter, policy)        edge config file (TOML, :mod:`edge.config`)
PATCHGATE_EDGE_MILTER_LISTEN           unix:/run/patchgate/milter.sock   comma-separated ``unix:/path`` /
                                                                         ``inet:host:port``
PATCHGATE_EDGE_POLICY_LISTEN           (milter: off; policy:             the same for the policy service; set for
                                       unix:/run/patchgate/policy.sock)  ``milter``, that process also serves it
PATCHGATE_EDGE_POLICY_MODE             postfix                           ``postfix`` (keep connections open) or
                                                                         ``exim`` (close after each reply)
PATCHGATE_EDGE_CATCHUP_TIMEOUT         30                                seconds to wait for the verdict cache to
                                                                         catch up before failing open
PATCHGATE_EDGE_PUBLISH                 1                                 ``0``: no metadata publishing
PATCHGATE_EDGE_LOOP                    uvloop                            ``uvloop`` or ``asyncio``
PATCHGATE_EDGE_LOG_LEVEL               INFO                              DEBUG / INFO / WARNING
PATCHGATE_EDGE_METRICS_PORT            0                                 Prometheus ``/metrics`` port (0: off)
PATCHGATE_EDGE_METRICS_BIND            127.0.0.1                         its address
PATCHGATE_EDGE_SOCKET_GROUP            (the process's group)             group owning the Unix sockets
PATCHGATE_EDGE_SOCKET_MODE             0660                              their mode (octal)
PATCHGATE_EDGE_IDLE_TIMEOUT            milter 900, policy 330            seconds without input before a connection
                                                                         is closed (0: never)
PATCHGATE_EDGE_POLICY_IDLE_TIMEOUT     330                               the same for ``milter --policy-listen``
PATCHGATE_EDGE_MAX_CONNECTIONS         512                               connections per listener kind
PATCHGATE_EDGE_MAX_REPLY_BUFFER        65536                             unwritten reply bytes per connection
                                                                         before reading stops
PATCHGATE_EDGE_MAX_HEADERS             1000                              headers the milter stores per message
PATCHGATE_EDGE_MAX_HEADER_BYTES        262144                            header bytes it stores per message
PATCHGATE_EDGE_CLOCK_OFFSET_S          0                                 seconds added to the edge's clock (replays
                                                                         and tests only; never in production)
=====================================  ================================  ==========================================

``PATCHGATE_EDGE_KAFKA_BOOTSTRAP``, ``PATCHGATE_EDGE_VERDICTS_TOPIC`` and ``PATCHGATE_EDGE_METADATA_TOPIC``
are the old names of the first, third and fourth: still read for one release, with a warning.

The topics and the mode are the workers' settings, read under the same names: in the per-tenant mode
an edge is given the shared names (``patchgate.metadata``, not ``patchgate.metadata.contoso``) and its
tenant comes from its config (:meth:`EdgeSettings.edge_topics`), so the tenant is named in one place.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from processors.kafka.config import KafkaConfig
from processors.settings import (
    TENANT_ID_PATTERN,
    EnvSettings,
    SettingsError,
    check_range,
    check_topic,
    check_topic_mode,
    env_name,
    load_kafka,
    require,
    tenant_topic_pattern,
)

POLICY_MODES = ("postfix", "exim")
LOOPS = ("uvloop", "asyncio")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MILTER_IDLE_S = 900.0  # above Postfix's own limits, so Postfix closes first
POLICY_IDLE_S = 330.0
POLICY_LISTEN = "unix:/run/patchgate/policy.sock"
_TENANT_ID = re.compile(TENANT_ID_PATTERN + r"\Z")


@dataclass(frozen=True, slots=True)
class EdgeTopics:
    """Where an edge publishes metadata and which verdicts it follows.

    ``verdicts`` is a topic name, or with ``verdicts_pattern`` a regular expression of every tenant's
    verdicts topic (its one group the tenant: operator tools in the per-tenant mode). ``tenant``: the
    tenant every verdict of ``verdicts`` must name (None in the shared mode)."""

    metadata: str
    verdicts: str
    tenant: str | None = None
    verdicts_pattern: bool = False


@dataclass(frozen=True, slots=True)
class EdgeSettings(EnvSettings):
    kafka_bootstrap: str = ""  # empty: the properties file's bootstrap.servers, else 127.0.0.1:9092
    kafka_config: Path | None = None
    topic_verdicts: str = "patchgate.verdicts"
    topic_metadata: str = "patchgate.metadata"
    metadata_topic_mode: str = "shared"
    edge_config: Path | None = None
    edge_milter_listen: str = "unix:/run/patchgate/milter.sock"
    edge_policy_listen: str = ""
    edge_policy_mode: str = "postfix"
    edge_catchup_timeout: float = 30.0
    edge_publish: bool = True
    edge_loop: str = "uvloop"
    edge_log_level: str = "INFO"
    edge_metrics_port: int = 0
    edge_metrics_bind: str = "127.0.0.1"
    edge_socket_group: str = ""
    edge_socket_mode: str = "0660"
    edge_idle_timeout: float | None = None  # None: the command's default (milter 900, policy 330)
    edge_policy_idle_timeout: float = POLICY_IDLE_S
    edge_max_connections: int = 512
    edge_max_reply_buffer: int = 65536
    edge_max_headers: int = 1000
    edge_max_header_bytes: int = 262144
    edge_clock_offset_s: float = 0.0
    kafka: KafkaConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kafka", load_kafka(self))
        check_topic(self, "topic_verdicts", "topic_metadata")
        check_topic_mode(self)
        require(self.edge_policy_mode in POLICY_MODES, "edge_policy_mode",
                f"must be one of {', '.join(POLICY_MODES)}, got {self.edge_policy_mode!r}")
        require(self.edge_loop.strip().lower() in LOOPS, "edge_loop",
                f"expected 'uvloop' or 'asyncio', got {self.edge_loop!r}")
        require(self.edge_log_level.upper() in LOG_LEVELS, "edge_log_level",
                f"must be one of {', '.join(LOG_LEVELS)}, got {self.edge_log_level!r}")
        check_range(self, "edge_catchup_timeout", 0, 3600)
        check_range(self, "edge_metrics_port", 0, 65535)
        require(_octal(self.edge_socket_mode) is not None, "edge_socket_mode",
                f"expected permission bits like 0660, got {self.edge_socket_mode!r}")
        for name in ("edge_idle_timeout", "edge_policy_idle_timeout"):
            if getattr(self, name) is not None:
                check_range(self, name, 0, 86400)
        check_range(self, "edge_max_connections", 1, 1_000_000)
        check_range(self, "edge_max_reply_buffer", 1024, 1 << 30)
        check_range(self, "edge_max_headers", 1, 1_000_000)
        check_range(self, "edge_max_header_bytes", 1024, 1 << 30)
        check_range(self, "edge_clock_offset_s", -10 * 365 * 86400, 10 * 365 * 86400)

    @property
    def per_tenant_topics(self) -> bool:
        return self.metadata_topic_mode == "per-tenant"

    def edge_topics(self, tenants: Collection[str] | None) -> EdgeTopics:
        """The topics of an edge whose config's connectors name ``tenants`` (None: no config, an
        operator's tool, which follows every tenant's verdicts in the per-tenant mode).

        In the per-tenant mode an edge serves exactly one tenant (its Kafka principal may write that
        tenant's metadata topic and read its verdicts topic only); a config naming none or several
        is refused with a :class:`SettingsError`."""
        if not self.per_tenant_topics:
            return EdgeTopics(self.topic_metadata, self.topic_verdicts)
        if tenants is None:
            return EdgeTopics(self.topic_metadata, tenant_topic_pattern(self.topic_verdicts), verdicts_pattern=True)
        mode = f"{env_name('metadata_topic_mode')}=per-tenant"
        if len(tenants) != 1:
            named = ", ".join(sorted(tenants)) or "none"
            raise SettingsError(f"{mode}: an edge serves one tenant, its connectors name {len(tenants)} ({named})")
        tenant = next(iter(tenants))
        if not _TENANT_ID.match(tenant):
            raise SettingsError(f"{mode}: the connectors' tenant_id {tenant!r} is no tenant id the workers "
                                f"admit ({TENANT_ID_PATTERN})")
        return EdgeTopics(f"{self.topic_metadata}.{tenant}", f"{self.topic_verdicts}.{tenant}", tenant)

    @property
    def socket_mode(self) -> int:
        return _octal(self.edge_socket_mode) or 0

    def idle_timeout(self, default: float) -> float:
        """The idle limit of this command's own listener (``default`` when not set)."""
        return default if self.edge_idle_timeout is None else self.edge_idle_timeout


def _octal(text: str) -> int | None:
    try:
        value = int(text, 8)
    except ValueError:
        return None
    return value if 0 <= value <= 0o777 else None
