"""The API's own settings (``patchgate api``), read like every component's: see :mod:`processors.settings`.

===================================  ===========  =====================================================
Environment variable                 Default      Meaning
===================================  ===========  =====================================================
PATCHGATE_API_PORT                   8080         TCP port
PATCHGATE_API_BIND                   127.0.0.1    address to bind (put a TLS proxy in front when public)
PATCHGATE_API_TOKENS_FILE            (none)       TOML/JSON file of token = tenant id or "*" (operator)
PATCHGATE_API_TOKENS                 (none)       the same inline: ``token=tenant,token2=*``
PATCHGATE_API_READ_TIMEOUT           10           seconds to receive a request's line and headers (from
                                                  the connection's start or the previous answer: also the
                                                  keep-alive idle limit) and, separately, its body
PATCHGATE_API_MAX_CONNECTIONS        512          connections open at once; more are closed at once
PATCHGATE_API_PROBE_PORT             9465         /livez, /readyz and /metrics (:mod:`processors.probes`;
                                                  0 = off)
PATCHGATE_API_PROBE_BIND             127.0.0.1    address of that server (0.0.0.0 in a pod)
PATCHGATE_API_POLICY_CHECK_INTERVAL  2            seconds between two looks at the policy file
                                                  (0.05..3600); a changed file is swapped in if it
                                                  validates, as the workers do (:mod:`processors.policyfile`)
===================================  ===========  =====================================================

The two token variables are read by :meth:`processors.api.auth.TokenStore.from_env` (the inline one is
a secret: it is never shown). Kafka, Redis, topics, key prefix and the policy file come from the
shared :class:`processors.settings.Settings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.settings import POLICY_CHECK_INTERVAL_S, EnvSettings, check_range, require


@dataclass(frozen=True, slots=True)
class ApiSettings(EnvSettings):
    api_port: int = 8080
    api_bind: str = "127.0.0.1"
    api_read_timeout: float = 10.0
    api_max_connections: int = 512
    api_probe_port: int = 9465
    api_probe_bind: str = "127.0.0.1"
    api_policy_check_interval: float = POLICY_CHECK_INTERVAL_S

    def __post_init__(self) -> None:
        check_range(self, "api_port", 0, 65535)
        require(bool(self.api_bind.strip()), "api_bind", "must not be empty")
        check_range(self, "api_read_timeout", 0.1, 3600)
        check_range(self, "api_max_connections", 1, 100_000)
        check_range(self, "api_probe_port", 0, 65535)
        require(bool(self.api_probe_bind.strip()), "api_probe_bind", "must not be empty")
        check_range(self, "api_policy_check_interval", 0.05, 3600)
