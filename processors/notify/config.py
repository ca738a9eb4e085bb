"""Webhook configuration of ``patchgate notify`` (TOML; path in ``PATCHGATE_NOTIFY_CONFIG`` or ``--config``).

Example::

    [delivery]                 # every key optional; these are the defaults
    max_attempts = 5           # POST attempts per notification before it is dead-lettered
    initial_backoff_s = 1.0    # wait after the first failure; doubles after each further failure
    max_backoff_s = 60.0       # longest wait between two attempts
    timeout_s = 10.0           # per attempt (connect + answer)
    dedupe_ttl_s = 604800      # how long delivered notification ids are remembered (7 days)

    [tenants.contoso]
    url = "https://hooks.contoso.example/patchgate"
    secret = "whsec_GvT9t0+dd+zBm7ROzAgY1AZrPkeiLOLj"   # optional: adds webhook-signature

    [tenants."*"]              # optional: every tenant without an entry of its own
    url = "https://ops.example/patchgate"

Signatures follow the Standard Webhooks specification (see ``processors/notify/README.md``): the
secret is ``whsec_`` and the base64 of 24 to 64 random bytes, e.g. from
``python -c "import base64, os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())"``.
A secret in any other form is refused at startup, with that command in the message.
"""

from __future__ import annotations

import base64
import binascii
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from processors.errors import PatchgateError

TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would accept a final newline
SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)
NEW_SECRET_COMMAND = "python -c \"import base64, os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())\""


class NotifyConfigError(PatchgateError, ValueError):
    """The webhook configuration is invalid; the message names the key."""


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    secret: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"Webhook(url={self.url!r}, secret={'***' if self.secret else None})"

    @property
    def key(self) -> bytes | None:
        """The HMAC key: the bytes the ``whsec_`` secret encodes."""
        return None if self.secret is None else secret_key(self.secret)


def secret_key(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret; ValueError for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {SECRET_PREFIX!r} followed by standard base64") from None
    if not SECRET_BYTES[0] <= len(key) <= SECRET_BYTES[1]:
        raise ValueError(f"must encode {SECRET_BYTES[0]} to {SECRET_BYTES[1]} random bytes, not {len(key)}")
    return key


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    timeout_s: float = 10.0
    dedupe_ttl_s: int = 7 * 86400

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based): exponential, capped."""
        return float(min(self.max_backoff_s, self.initial_backoff_s * (2 ** (failures - 1))))


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)

    def webhook_for(self, tenant: str) -> Webhook | None:
        return self.webhooks.get(tenant) or self.webhooks.get("*")


def load_notify_config(path: Path) -> NotifyConfig:
    try:
        document = tomllib.loads(Path(path).read_text("utf-8"))
    except OSError as error:
        raise NotifyConfigError(f"cannot read {path}: {error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise NotifyConfigError(f"{path} is not valid TOML: {error}") from None
    return notify_config_from_mapping(document)


def notify_config_from_mapping(document: dict[str, Any]) -> NotifyConfig:
    unknown = sorted(set(document) - {"delivery", "tenants"})
    if unknown:
        raise NotifyConfigError(f"unknown table {unknown[0]!r} (allowed: delivery, tenants)")
    delivery_raw = document.get("delivery", {})
    if not isinstance(delivery_raw, dict):
        raise NotifyConfigError("delivery: must be a table")
    allowed = {"max_attempts", "initial_backoff_s", "max_backoff_s", "timeout_s", "dedupe_ttl_s"}
    unknown = sorted(set(delivery_raw) - allowed)
    if unknown:
        raise NotifyConfigError(f"delivery: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    defaults = DeliveryPolicy()
    delivery = DeliveryPolicy(
        max_attempts=int(_number(delivery_raw, "max_attempts", defaults.max_attempts, 1, 100, integer=True)),
        initial_backoff_s=_number(delivery_raw, "initial_backoff_s", defaults.initial_backoff_s, 0.0, 3600),
        max_backoff_s=_number(delivery_raw, "max_backoff_s", defaults.max_backoff_s, 0.0, 86400),
        timeout_s=_number(delivery_raw, "timeout_s", defaults.timeout_s, 0.1, 300),
        dedupe_ttl_s=int(_number(delivery_raw, "dedupe_ttl_s", defaults.dedupe_ttl_s, 60, 366 * 86400, integer=True)),
    )
    tenants_raw = document.get("tenants", {})
    if not isinstance(tenants_raw, dict):
        raise NotifyConfigError("tenants: must be a table of tenant id = {url, secret}")
    webhooks: dict[str, Webhook] = {}
    for tenant, entry in tenants_raw.items():
        where = f"tenants.{tenant}"
        if tenant != "*" and not TENANT.match(tenant):
            raise NotifyConfigError(f"{where}: not a valid tenant id (or '*')")
        if not isinstance(entry, dict):
            raise NotifyConfigError(f"{where}: must be a table with url (and optional secret)")
        unknown = sorted(set(entry) - {"url", "secret"})
        if unknown:
            raise NotifyConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: secret, url)")
        url = entry.get("url")
        if not isinstance(url, str):
            raise NotifyConfigError(f"{where}.url: required (an http:// or https:// URL)")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise NotifyConfigError(f"{where}.url: must be an http:// or https:// URL, got {url!r}")
        secret = entry.get("secret")
        if secret is not None:
            _check_secret(secret, f"{where}.secret")
        webhooks[tenant] = Webhook(url, secret)
    return NotifyConfig(webhooks, delivery)


def _check_secret(secret: object, where: str) -> None:
    if not isinstance(secret, str):
        raise NotifyConfigError(f"{where}: must be a string like whsec_<base64>")
    try:
        secret_key(secret)
    except ValueError as error:
        raise NotifyConfigError(f"{where}: {error} (a Standard Webhooks secret; make one with "
                                f"{NEW_SECRET_COMMAND} and give the same value to the receiver)") from None


def _number(table: dict[str, Any], key: str, default: float, low: float, high: float,
            integer: bool = False) -> float:
    value = table.get(key, default)
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise NotifyConfigError(f"delivery.{key}: must be {kind} {low}..{high}, got {value!r}")
    return float(value)
