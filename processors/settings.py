"""Deployment settings: one frozen, validated object per component, read from ``PATCHGATE_*`` variables.

Policy (stages, classification rules, pause quota, replies) lives in the policy file, not here;
these are the 12-factor knobs that differ between deployments.

One mechanism for every component: a settings class is a frozen dataclass deriving from
:class:`EnvSettings`; field ``foo_bar`` is read from ``PATCHGATE_FOO_BAR`` (one name per setting),
converted by its annotated type (``int``, ``float``, ``bool``, ``Path``, ``str``), and checked in
``__post_init__`` with :func:`require` and the checks below, so that a bad value fails with a
:class:`SettingsError` naming the variable. The worker's :class:`Settings` is below; the API's,
the notifier's and the edge's live next to them (``processors.api.settings``,
``processors.notify.settings``, ``edge.settings``) and share the Kafka fields. Names that were
used before are still read for one release, with a warning logged once per name
(:data:`DEPRECATED_NAMES`).

=================================  =========================  ============================================
Environment variable               Default                    Meaning
=================================  =========================  ============================================
PATCHGATE_KAFKA_BOOTSTRAP          127.0.0.1:9092             Kafka bootstrap servers (else the properties
                                                              file's ``bootstrap.servers``, else the default)
PATCHGATE_KAFKA_CONFIG             (none)                     Kafka client properties file: SASL/TLS and
                                                              other librdkafka properties, see
                                                              :mod:`processors.kafka.config`
PATCHGATE_REDIS_URL                redis://127.0.0.1:6379/0   Redis URL: one server (redis://, rediss://,
                                                              unix://), Redis Cluster (redis+cluster://)
                                                              or Sentinel (redis+sentinel://); TLS CA and
                                                              more as query parameters: see
                                                              :mod:`processors.state.connection`
PATCHGATE_TOPIC_METADATA           patchgate.metadata         message-metadata events (input)
PATCHGATE_TOPIC_VERDICTS           patchgate.verdicts         verdicts (compacted, output); in the per-tenant
                                                              mode each tenant's go to
                                                              ``<TOPIC_VERDICTS>.<tenant>`` instead
PATCHGATE_TOPIC_NOTIFICATIONS      patchgate.notifications    notifications (output)
PATCHGATE_TOPIC_DEADLETTER         patchgate.deadletter       rejected input (output)
PATCHGATE_TOPIC_COMMANDS           patchgate.commands         operator commands, e.g. pauses (input)
PATCHGATE_METADATA_PARTITIONS      8                          partitions of the metadata topics (below)
PATCHGATE_CONSUMER_GROUP           patchgate-worker           consumer group of the workers
PATCHGATE_POLICY_FILE              (packaged policy.toml)     policy file; re-read when it changes
PATCHGATE_CATALOG_FILE             (packaged CSV)             build catalog; re-read when it changes
PATCHGATE_PRODUCTS_DIR             (packaged folder)          product catalogs (<product>.csv); re-read when
                                                              a file in it changes
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
PATCHGATE_POLICY_CHECK_INTERVAL_S  2                          how often the policy file and the catalogs are
                                                              looked at for a change (their stat only)
PATCHGATE_KEY_PREFIX               pg                         prefix of every Redis key
PATCHGATE_OUTBOX_RECOVERY_S        30                         age after which an unfinished publication
                                                              counts as abandoned (its claimer died)
PATCHGATE_OUTBOX_STUCK_S           120                        age of the oldest unacknowledged outbox claim
                                                              after which the worker reports not ready
PATCHGATE_WEB_PORT                 6066                       Faust's web server port (0 = off)
PATCHGATE_METRICS_PORT             9464                       /metrics, /livez and /readyz of the worker
                                                              (:mod:`processors.probes`; 0 = off)
PATCHGATE_METRICS_BIND             127.0.0.1                  address of the metrics server
PATCHGATE_LAG_INTERVAL_S           15                         how often each worker asks the broker for the
                                                              group's lag (patchgate_consumer_lag; 0 = off)
PATCHGATE_DATA_DIR                 <temp dir>/patchgate       Faust's local directory (one ``<group>-data``
                                                              folder per consumer group; patchgate keeps
                                                              no state there, everything is in Redis)
PATCHGATE_METADATA_TOPIC_MODE      shared                     ``shared``: one metadata topic, the Kafka key
                                                              names the tenant; ``per-tenant``: topics
                                                              ``<TOPIC_METADATA>.<tenant>``, subscribed by
                                                              pattern, the topic names the tenant; the
                                                              verdicts of a tenant go to
                                                              ``<TOPIC_VERDICTS>.<tenant>`` (the edges read
                                                              this variable too)
PATCHGATE_METADATA_TENANT_PATTERN  [A-Za-z0-9][A-Za-z0-9._-]  regular expression of the tenant ids whose
                                   {0,63}                     topics a per-tenant worker subscribes to
PATCHGATE_EVENT_MAX_FUTURE_S       86400                      how far ``observed_at`` may lie after the
                                                              broker's timestamp of its Kafka message
=================================  =========================  ============================================

Topics (:mod:`processors.kafka.topics`; an existing topic with fewer partitions or replicas, or a lower
``min.insync.replicas``, than these contradicts patchgate: workers refuse to start):

===================================  =========================  ==========================================
Environment variable                 Default                    Meaning
===================================  =========================  ==========================================
PATCHGATE_METADATA_PARTITIONS        8                          partitions of the metadata topics
PATCHGATE_COMMANDS_PARTITIONS        0 (= METADATA_PARTITIONS)  partitions of the commands topic
PATCHGATE_VERDICTS_PARTITIONS        0 (= METADATA_PARTITIONS)  partitions of the verdicts topic
PATCHGATE_NOTIFICATIONS_PARTITIONS   0 (= METADATA_PARTITIONS)  partitions of the notifications topic
PATCHGATE_DEADLETTER_PARTITIONS      0 (= METADATA_PARTITIONS)  partitions of the dead-letter topic
PATCHGATE_TOPIC_REPLICATION_FACTOR   1                          replication factor of every topic
PATCHGATE_TOPIC_MIN_INSYNC_REPLICAS  0 (the broker's default)   ``min.insync.replicas`` of every topic (at
                                                                most the replication factor)
===================================  =========================  ==========================================
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

from processors.errors import PatchgateError
from processors.kafka.config import KafkaConfig, KafkaConfigError
from processors.state.urls import RedisUrlError, check_url

#: how often a process looks at its policy and catalog files for a change, by default (seconds)
POLICY_CHECK_INTERVAL_S = 2.0

PREFIX = "PATCHGATE_"
METADATA_TOPIC_MODES = ("shared", "per-tenant")
PER_TOPIC_PARTITIONS = ("commands_partitions", "verdicts_partitions", "notifications_partitions",
                        "deadletter_partitions")
# the tenant ids patchgate admits (the Kafka key's tenant part): safe as the last part of a topic name
TENANT_ID_PATTERN = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
TENANT_ID_MAX = 64
TOPIC_NAME_MAX = 249
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

# old variable -> its one name now; read (with a warning) for one release
DEPRECATED_NAMES: Mapping[str, str] = {
    "PATCHGATE_EDGE_KAFKA_BOOTSTRAP": "PATCHGATE_KAFKA_BOOTSTRAP",
    "PATCHGATE_EDGE_VERDICTS_TOPIC": "PATCHGATE_TOPIC_VERDICTS",
    "PATCHGATE_EDGE_METADATA_TOPIC": "PATCHGATE_TOPIC_METADATA",
}

log = logging.getLogger(__name__)
_warned: set[str] = set()
_warned_lock = threading.Lock()
S = TypeVar("S", bound="EnvSettings")


class SettingsError(PatchgateError, ValueError):
    """An environment variable has a value patchgate cannot use."""


def env_name(field_name: str) -> str:
    """The one environment variable of a settings field."""
    return PREFIX + field_name.upper()


def read_env(environ: Mapping[str, str], name: str) -> str | None:
    """``name``'s value, else a deprecated name's (warned about once per process), else None."""
    raw = environ.get(name)
    if raw:
        return raw
    for old, new in DEPRECATED_NAMES.items():
        if new == name and environ.get(old):
            _warn_deprecated(old, new)
            return environ[old]
    return None


def _warn_deprecated(old: str, new: str) -> None:
    with _warned_lock:
        if old in _warned:
            return
        _warned.add(old)
    log.warning("%s is deprecated and will be ignored in the next release: use %s", old, new)


def redis_url_error(url: str) -> str | None:
    """Why ``url`` is no Redis URL patchgate can use (password redacted), or None."""
    try:
        check_url(url)
    except RedisUrlError as error:
        return str(error)
    return None


def require(ok: bool, field_name: str, message: str) -> None:
    """Raise a SettingsError naming the field's variable unless ``ok``."""
    if not ok:
        raise SettingsError(f"{env_name(field_name)}: {message}")


def check_topic(settings: object, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        require(bool(value) and len(value) <= TOPIC_NAME_MAX and all(c.isalnum() or c in "._-" for c in value),
                name, f"is not a valid Kafka topic name: {value!r}")


def tenant_topic_pattern(base: str, tenant_pattern: str = TENANT_ID_PATTERN) -> str:
    """The regular expression of the per-tenant topics ``<base>.<tenant id>``; its one group is the tenant id."""
    return rf"^{re.escape(base)}\.({tenant_pattern})$"


class TopicFields(Protocol):
    """The topic fields the worker and the edge share."""

    @property
    def topic_metadata(self) -> str: ...

    @property
    def topic_verdicts(self) -> str: ...

    @property
    def metadata_topic_mode(self) -> str: ...


def check_topic_mode(settings: TopicFields) -> None:
    """``metadata_topic_mode`` is a known mode; in the per-tenant mode every tenant's topic name
    (``<topic>.<tenant id>``) must fit Kafka's length limit."""
    mode = settings.metadata_topic_mode
    require(mode in METADATA_TOPIC_MODES, "metadata_topic_mode",
            f"must be one of {', '.join(METADATA_TOPIC_MODES)}, got {mode!r}")
    if mode == "per-tenant":
        longest = TOPIC_NAME_MAX - 1 - TENANT_ID_MAX
        for name in ("topic_metadata", "topic_verdicts"):
            require(len(getattr(settings, name)) <= longest, name,
                    f"is longer than {longest} characters: a tenant's topic <name>.<tenant id> would exceed "
                    f"Kafka's {TOPIC_NAME_MAX} (per-tenant topic mode)")


def check_range(settings: object, name: str, low: float, high: float) -> None:
    require(low <= getattr(settings, name) <= high, name, f"must be {_number(low)}..{_number(high)}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def check_file(settings: object, *names: str) -> None:
    for name in names:
        path = getattr(settings, name)
        require(path is None or Path(path).is_file(), name, f"is not a readable file: {path}")


class KafkaFields(Protocol):
    """The two Kafka fields every component that talks to Kafka has."""

    @property
    def kafka_bootstrap(self) -> str: ...

    @property
    def kafka_config(self) -> Path | None: ...


def load_kafka(settings: KafkaFields) -> KafkaConfig:
    """The settings' Kafka configuration; fills in ``kafka_bootstrap`` when the file names the servers."""
    path = settings.kafka_config
    try:
        kafka = KafkaConfig.load(settings.kafka_bootstrap or None, path)
    except KafkaConfigError as error:
        raise SettingsError(f"{env_name('kafka_config')}: {error}") from None
    object.__setattr__(settings, "kafka_bootstrap", kafka.bootstrap)
    return kafka


class EnvSettings:
    """Base of every component's settings: a frozen dataclass read from ``PATCHGATE_<FIELD>``."""

    __slots__ = ()

    @classmethod
    def from_env(cls: type[S], environ: Mapping[str, str] | None = None, **overrides: object) -> S:
        """Read ``PATCHGATE_<FIELD>`` variables; ``overrides`` (not None) win over the environment."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for item in fields(cls):  # type: ignore[arg-type]
            if not item.init:
                continue
            raw = read_env(environ, env_name(item.name))
            if raw is not None:
                values[item.name] = _convert(item.name, str(item.type), raw)
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The ``PATCHGATE_<FIELD>`` variables that :meth:`from_env` reads back as these settings."""
        return {env_name(item.name): _text(getattr(self, item.name))
                for item in fields(self) if item.init and getattr(self, item.name) is not None}  # type: ignore[arg-type]


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _convert(name: str, type_name: str, raw: str) -> object:
    base = type_name.split("|")[0].strip()
    try:
        if base == "int":
            return int(raw)
        if base == "float":
            return float(raw)
    except ValueError:
        raise SettingsError(f"{env_name(name)}: expected a number, got {raw!r}") from None
    if base == "bool":
        word = raw.strip().lower()
        require(word in TRUE_WORDS + FALSE_WORDS, name, f"expected 1/0 (true/false), got {raw!r}")
        return word in TRUE_WORDS
    if base == "Path":
        return Path(raw)
    return raw


@dataclass(frozen=True, slots=True)
class Settings(EnvSettings):
    kafka_bootstrap: str = ""  # empty: the properties file's bootstrap.servers, else 127.0.0.1:9092
    kafka_config: Path | None = None
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)  # may hold a password
    topic_metadata: str = "patchgate.metadata"
    topic_verdicts: str = "patchgate.verdicts"
    topic_notifications: str = "patchgate.notifications"
    topic_deadletter: str = "patchgate.deadletter"
    topic_commands: str = "patchgate.commands"
    metadata_partitions: int = 8
    commands_partitions: int = 0  # 0: metadata_partitions
    verdicts_partitions: int = 0
    notifications_partitions: int = 0
    deadletter_partitions: int = 0
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 0  # 0: the broker's default
    consumer_group: str = "patchgate-worker"
    policy_file: Path | None = None
    catalog_file: Path | None = None
    products_dir: Path | None = None
    batch_max_messages: int = 500
    batch_max_wait_ms: int = 5
    fetch_max_wait_ms: int = 100
    session_timeout_ms: int = 10000
    timer_interval_s: float = 5.0
    policy_check_interval_s: float = POLICY_CHECK_INTERVAL_S
    key_prefix: str = "pg"
    outbox_recovery_s: float = 30.0
    outbox_stuck_s: float = 120.0
    web_port: int = 6066
    metrics_port: int = 9464
    metrics_bind: str = "127.0.0.1"
    lag_interval_s: float = 15.0
    data_dir: Path | None = None
    metadata_topic_mode: str = "shared"
    metadata_tenant_pattern: str = TENANT_ID_PATTERN
    event_max_future_s: float = 86400.0
    kafka: KafkaConfig = field(init=False, repr=False, compare=False)  # type: ignore[misc]

    def __post_init__(self) -> None:
        object.__setattr__(self, "kafka", load_kafka(self))
        require(redis_url_error(self.redis_url) is None, "redis_url", redis_url_error(self.redis_url) or "")
        check_topic(self, "topic_metadata", "topic_verdicts", "topic_notifications", "topic_deadletter",
                    "topic_commands")
        check_range(self, "metadata_partitions", 1, 10000)
        self._check_topic_layout()
        check_range(self, "batch_max_messages", 1, 100000)
        check_range(self, "batch_max_wait_ms", 1, 60000)
        check_range(self, "fetch_max_wait_ms", 1, 10000)
        check_range(self, "session_timeout_ms", 1000, 300000)
        check_range(self, "timer_interval_s", 0.01, 3600)
        check_range(self, "policy_check_interval_s", 0.05, 3600)
        require(bool(self.key_prefix) and "{" not in self.key_prefix and "}" not in self.key_prefix,
                "key_prefix", "must be non-empty and contain no braces (they are Redis Cluster hash tags)")
        check_range(self, "outbox_recovery_s", 0.5, 86400)
        check_range(self, "outbox_stuck_s", 1, 86400)
        check_range(self, "web_port", 0, 65535)
        check_range(self, "metrics_port", 0, 65535)
        require(self.lag_interval_s == 0 or 1 <= self.lag_interval_s <= 3600, "lag_interval_s",
                "must be 0 (off) or 1..3600")
        check_topic_mode(self)
        require(_compiles(self.metadata_tenant_pattern), "metadata_tenant_pattern",
                f"is not a regular expression: {self.metadata_tenant_pattern!r}")
        check_range(self, "event_max_future_s", 60, 30 * 86400)
        check_file(self, "policy_file", "catalog_file")
        require(self.products_dir is None or Path(self.products_dir).is_dir(), "products_dir",
                f"is not a folder: {self.products_dir}")

    @property
    def faust_data_dir(self) -> Path:
        return self.data_dir or Path(tempfile.gettempdir()) / "patchgate"

    @property
    def per_tenant_topics(self) -> bool:
        return self.metadata_topic_mode == "per-tenant"

    @property
    def metadata_topic_pattern(self) -> str:
        """The pattern a per-tenant worker subscribes to; its one group is the tenant id."""
        return tenant_topic_pattern(self.topic_metadata, self.metadata_tenant_pattern)

    def tenant_metadata_topic(self, tenant_id: str) -> str:
        """The metadata topic of one tenant in the per-tenant mode."""
        return f"{self.topic_metadata}.{tenant_id}"

    def tenant_verdicts_topic(self, tenant_id: str) -> str:
        """The verdicts topic of one tenant in the per-tenant mode (its edges read only this one)."""
        return f"{self.topic_verdicts}.{tenant_id}"

    def _check_topic_layout(self) -> None:
        for name in PER_TOPIC_PARTITIONS:
            check_range(self, name, 0, 10000)
        check_range(self, "topic_replication_factor", 1, 32)
        check_range(self, "topic_min_insync_replicas", 0, 32)
        factor = self.topic_replication_factor
        require(self.topic_min_insync_replicas <= factor, "topic_min_insync_replicas",
                f"must not exceed PATCHGATE_TOPIC_REPLICATION_FACTOR={factor} (no acks=all write could succeed)")

    def partitions_of(self, field_name: str) -> int:
        """The partition count of a ``<topic>_partitions`` field; 0 means the metadata topic's."""
        count: int = getattr(self, field_name)
        return count or self.metadata_partitions


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return bool(pattern)


def component_settings(cls: type[S], program: str, environ: Mapping[str, str] | None = None,
                       **overrides: Any) -> S:
    """``cls.from_env(...)``, or exit with status 2 and the error (naming the variable) on stderr."""
    import sys

    try:
        return cls.from_env(environ, **overrides)
    except SettingsError as error:
        print(f"{program}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
