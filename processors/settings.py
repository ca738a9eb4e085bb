"""Deployment settings: one frozen, validated object read from ``PATCHGATE_*`` environment variables.

Policy (stages, classification rules, pause quota, replies) lives in the policy file, not here;
these are the 12-factor knobs that differ between deployments.

=================================  =========================  ============================================
Environment variable               Default                    Meaning
=================================  =========================  ============================================
PATCHGATE_KAFKA_BOOTSTRAP          127.0.0.1:9092             Kafka bootstrap servers
PATCHGATE_REDIS_URL                redis://127.0.0.1:6379/0   Redis URL (redis:// or rediss://)
PATCHGATE_TOPIC_METADATA           patchgate.metadata         message-metadata events (input)
PATCHGATE_TOPIC_VERDICTS           patchgate.verdicts         verdicts (compacted, output)
PATCHGATE_TOPIC_NOTIFICATIONS      patchgate.notifications    notifications (output)
PATCHGATE_TOPIC_DEADLETTER         patchgate.deadletter       rejected input (output)
PATCHGATE_TOPIC_COMMANDS           patchgate.commands         operator commands, e.g. pauses (input)
PATCHGATE_METADATA_PARTITIONS      8                          partitions when patchgate creates topics
PATCHGATE_CONSUMER_GROUP           patchgate-worker           consumer group of the workers
PATCHGATE_POLICY_FILE              (packaged policy.toml)     policy file; re-read when it changes
PATCHGATE_CATALOG_FILE             (packaged CSV)             build catalog; re-read when it changes
PATCHGATE_BATCH_MAX_MESSAGES       500                        Kafka messages per processing batch
PATCHGATE_BATCH_MAX_WAIT_MS        5                          longest wait to fill a batch (Faust's take
                                                              waits this long every cycle unless the batch
                                                              fills: a fixed latency cost per batch)
PATCHGATE_FETCH_MAX_WAIT_MS        100                        longest time the broker may hold a fetch of
                                                              the metadata topic (Faust fixes 1500 ms; brokers
                                                              that answer at the deadline add it to latency)
PATCHGATE_SESSION_TIMEOUT_MS       10000                      consumer-group session timeout (Kafka brokers
                                                              refuse values below group.min.session.timeout.ms,
                                                              6000 by default)
PATCHGATE_TIMER_INTERVAL_S         5                          how often the timer looks for due work
PATCHGATE_KEY_PREFIX               pg                         prefix of every Redis key
PATCHGATE_OUTBOX_RECOVERY_S        30                         age after which an unfinished publication
                                                              counts as abandoned (its claimer died)
PATCHGATE_WEB_PORT                 6066                       Faust's web server port (0 = off)
PATCHGATE_METRICS_PORT             9464                       Prometheus /metrics of the worker (0 = off)
PATCHGATE_METRICS_BIND             127.0.0.1                  address of the metrics server
PATCHGATE_LAG_INTERVAL_S           15                         how often each worker asks the broker for the
                                                              group's lag (patchgate_consumer_lag; 0 = off)
PATCHGATE_DATA_DIR                 <temp dir>/patchgate       Faust's local directory (one ``<group>-data``
                                                              folder per consumer group; patchgate keeps
                                                              no state there, everything is in Redis)
PATCHGATE_METADATA_TOPIC_MODE      shared                     ``shared``: one metadata topic, the Kafka key
                                                              names the tenant; ``per-tenant``: topics
                                                              ``<TOPIC_METADATA>.<tenant>``, subscribed by
                                                              pattern, the topic names the tenant
PATCHGATE_METADATA_TENANT_PATTERN  [A-Za-z0-9][A-Za-z0-9._-]  regular expression of the tenant ids whose
                                   {0,63}                     topics a per-tenant worker subscribes to
PATCHGATE_EVENT_MAX_FUTURE_S       86400                      how far ``observed_at`` may lie after the
                                                              broker's timestamp of its Kafka message
=================================  =========================  ============================================
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from processors.errors import PatchgateError

PREFIX = "PATCHGATE_"
METADATA_TOPIC_MODES = ("shared", "per-tenant")


class SettingsError(PatchgateError, ValueError):
    """An environment variable has a value patchgate cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    topic_metadata: str = "patchgate.metadata"
    topic_verdicts: str = "patchgate.verdicts"
    topic_notifications: str = "patchgate.notifications"
    topic_deadletter: str = "patchgate.deadletter"
    topic_commands: str = "patchgate.commands"
    metadata_partitions: int = 8
    consumer_group: str = "patchgate-worker"
    policy_file: Path | None = None
    catalog_file: Path | None = None
    batch_max_messages: int = 500
    batch_max_wait_ms: int = 5
    fetch_max_wait_ms: int = 100
    session_timeout_ms: int = 10000
    timer_interval_s: float = 5.0
    key_prefix: str = "pg"
    outbox_recovery_s: float = 30.0
    web_port: int = 6066
    metrics_port: int = 9464
    metrics_bind: str = "127.0.0.1"
    lag_interval_s: float = 15.0
    data_dir: Path | None = None
    metadata_topic_mode: str = "shared"
    metadata_tenant_pattern: str = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
    event_max_future_s: float = 86400.0

    def __post_init__(self) -> None:
        _require(bool(self.kafka_bootstrap.strip()), "KAFKA_BOOTSTRAP", "must not be empty")
        _require(self.redis_url.startswith(("redis://", "rediss://", "unix://")), "REDIS_URL",
                 f"must start with redis://, rediss:// or unix://, got {self.redis_url!r}")
        for name in ("topic_metadata", "topic_verdicts", "topic_notifications", "topic_deadletter",
                     "topic_commands"):
            value = getattr(self, name)
            _require(bool(value) and len(value) <= 249 and all(c.isalnum() or c in "._-" for c in value),
                     name.upper(), f"is not a valid Kafka topic name: {value!r}")
        _require(1 <= self.metadata_partitions <= 10000, "METADATA_PARTITIONS", "must be 1..10000")
        _require(1 <= self.batch_max_messages <= 100000, "BATCH_MAX_MESSAGES", "must be 1..100000")
        _require(1 <= self.batch_max_wait_ms <= 60000, "BATCH_MAX_WAIT_MS", "must be 1..60000")
        _require(1 <= self.fetch_max_wait_ms <= 10000, "FETCH_MAX_WAIT_MS", "must be 1..10000")
        _require(1000 <= self.session_timeout_ms <= 300000, "SESSION_TIMEOUT_MS", "must be 1000..300000")
        _require(0.01 <= self.timer_interval_s <= 3600, "TIMER_INTERVAL_S", "must be 0.01..3600")
        _require(bool(self.key_prefix) and "{" not in self.key_prefix and "}" not in self.key_prefix,
                 "KEY_PREFIX", "must be non-empty and contain no braces (they are Redis Cluster hash tags)")
        _require(0.5 <= self.outbox_recovery_s <= 86400, "OUTBOX_RECOVERY_S", "must be 0.5..86400")
        _require(0 <= self.web_port <= 65535, "WEB_PORT", "must be 0..65535")
        _require(0 <= self.metrics_port <= 65535, "METRICS_PORT", "must be 0..65535")
        _require(self.lag_interval_s == 0 or 1 <= self.lag_interval_s <= 3600, "LAG_INTERVAL_S",
                 "must be 0 (off) or 1..3600")
        _require(self.metadata_topic_mode in METADATA_TOPIC_MODES, "METADATA_TOPIC_MODE",
                 f"must be one of {', '.join(METADATA_TOPIC_MODES)}, got {self.metadata_topic_mode!r}")
        _require(_compiles(self.metadata_tenant_pattern), "METADATA_TENANT_PATTERN",
                 f"is not a regular expression: {self.metadata_tenant_pattern!r}")
        _require(60 <= self.event_max_future_s <= 30 * 86400, "EVENT_MAX_FUTURE_S", "must be 60..2592000")
        for name in ("policy_file", "catalog_file"):
            path = getattr(self, name)
            _require(path is None or Path(path).is_file(), name.upper(), f"is not a readable file: {path}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``PATCHGATE_<FIELD>`` variables; ``overrides`` win over the environment."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            values[field.name] = _convert(field.name, str(field.type), raw)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def faust_data_dir(self) -> Path:
        return self.data_dir or Path(tempfile.gettempdir()) / "patchgate"

    @property
    def per_tenant_topics(self) -> bool:
        return self.metadata_topic_mode == "per-tenant"

    @property
    def metadata_topic_pattern(self) -> str:
        """The pattern a per-tenant worker subscribes to; its one group is the tenant id."""
        return rf"^{re.escape(self.topic_metadata)}\.({self.metadata_tenant_pattern})$"

    def tenant_metadata_topic(self, tenant_id: str) -> str:
        """The metadata topic of one tenant in the per-tenant mode."""
        return f"{self.topic_metadata}.{tenant_id}"

    def to_env(self) -> dict[str, str]:
        """The ``PATCHGATE_<FIELD>`` variables that :meth:`from_env` reads back as these settings."""
        return {PREFIX + field.name.upper(): str(getattr(self, field.name))
                for field in fields(self) if getattr(self, field.name) is not None}


def _convert(name: str, type_name: str, raw: str) -> object:
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name.upper()}: expected a number, got {raw!r}") from None
    if "Path" in type_name:
        return Path(raw)
    return raw


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise SettingsError(f"{PREFIX}{name}: {message}")


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return bool(pattern)
