"""The notifier's own settings (``patchgate notify``), read like every component's: see :mod:`processors.settings`.

===========================  ================  ==========================================================
Environment variable         Default           Meaning
===========================  ================  ==========================================================
PATCHGATE_NOTIFY_CONFIG      (required)        webhook configuration TOML (:mod:`processors.notify.config`)
PATCHGATE_NOTIFY_GROUP       patchgate-notify  consumer group of the notifiers
PATCHGATE_NOTIFY_PROBE_PORT  9466              /livez, /readyz and /metrics (:mod:`processors.probes`;
                                               0 = off)
PATCHGATE_NOTIFY_PROBE_BIND  127.0.0.1         address of that server (0.0.0.0 in a pod)
===========================  ================  ==========================================================

Kafka, Redis, topics and key prefix come from the shared :class:`processors.settings.Settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from processors.settings import EnvSettings, check_range, require


@dataclass(frozen=True, slots=True)
class NotifySettings(EnvSettings):
    notify_config: Path | None = None
    notify_group: str = "patchgate-notify"
    notify_probe_port: int = 9466
    notify_probe_bind: str = "127.0.0.1"

    def __post_init__(self) -> None:
        require(self.notify_config is not None, "notify_config",
                "no webhook configuration (use --config or PATCHGATE_NOTIFY_CONFIG)")
        require(bool(self.notify_group.strip()), "notify_group", "must not be empty")
        check_range(self, "notify_probe_port", 0, 65535)
        require(bool(self.notify_probe_bind.strip()), "notify_probe_bind", "must not be empty")

    @property
    def webhook_config(self) -> Path:
        """The webhook configuration file (never None once constructed)."""
        return Path(self.notify_config or "")
