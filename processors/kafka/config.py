"""The one Kafka client configuration: bootstrap servers plus a client properties file.

``PATCHGATE_KAFKA_CONFIG`` names a properties file of librdkafka client properties, one
``key=value`` a line; blank lines and lines starting with ``#`` or ``!`` are comments::

    bootstrap.servers=kafka-1.example.net:9094,kafka-2.example.net:9094
    security.protocol=SASL_SSL
    sasl.mechanisms=SCRAM-SHA-512
    sasl.username=patchgate-worker
    sasl.password=s3cret=with=equals
    ssl.ca.location=/etc/patchgate/kafka-ca.pem

SASL/OAUTHBEARER is supported as OIDC client credentials only (``sasl.oauthbearer.method=oidc``,
:class:`OidcSettings`): the unsecured JWTs of librdkafka's default method are refused, and so are
other grant types.

The first ``=`` separates key and value (a value may contain ``=``); whitespace around both is
dropped. A key given twice is an error (which one was meant?), so is a line without ``=`` or with an
empty value. ``sasl.mechanism`` is accepted for ``sasl.mechanisms``. The properties patchgate knows
(security protocol, SASL mechanism and credentials, TLS files) are checked here; any other key is
handed to librdkafka, which refuses an unknown or invalid one when a client is built:
:func:`processors.kafka.clients.build` turns that into a :class:`KafkaConfigError` naming it.

Secrets (``sasl.password``, ``ssl.key.password``, ``sasl.oauthbearer.client.secret`` and any key
containing ``password``, ``secret`` or ``passphrase``) never appear in a repr, a log line or an
error message: they are shown as ``***``.

Every client merges the file *under* the component's own settings: what the component sets itself
(bootstrap servers from ``PATCHGATE_KAFKA_BOOTSTRAP``, acks, group ids, ...) wins.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from processors.errors import PatchgateError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
REDACTED = "***"
MAX_FILE_BYTES = 64 * 1024
KEY = re.compile(r"^[a-z][a-z0-9_.-]*$")
SECRET_KEY = re.compile(r"password|secret|passphrase", re.IGNORECASE)
ALIASES = {"sasl.mechanism": "sasl.mechanisms"}
SECURITY_PROTOCOLS = ("plaintext", "ssl", "sasl_plaintext", "sasl_ssl")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")
PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
FILE_KEYS = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "https.ca.location")
ENDPOINT_IDENTIFICATION = ("none", "https")
OIDC_REQUIRED = ("sasl.oauthbearer.client.id", "sasl.oauthbearer.client.secret",
                 "sasl.oauthbearer.token.endpoint.url")
EXTENSION_KEY = re.compile(r"^[A-Za-z]+$")  # RFC 7628 section 3.1
EXTENSION_VALUE = re.compile(r"^[\x21-\x2b\x2d-\x7e]+$")  # printable, no space, no "," (the separator)


class KafkaConfigError(PatchgateError, ValueError):
    """The Kafka client configuration is unusable; the message names the file, line or property."""


def is_secret(key: str) -> bool:
    """Whether a property's value must never be shown."""
    return bool(SECRET_KEY.search(key))


def shown(key: str, value: object) -> str:
    """A property's value as it may appear in logs and errors."""
    return REDACTED if is_secret(key) else repr(value)


def redact(text: str, secrets: Mapping[str, Any]) -> str:
    """``text`` with every secret value of ``secrets`` replaced by ``***``."""
    for key, value in secrets.items():
        if is_secret(key) and isinstance(value, str) and value:
            text = text.replace(value, REDACTED)
    return text


def parse_properties(text: str, source: str = "<properties>") -> dict[str, str]:
    """The properties of a client properties file, validated (see the module docstring)."""
    properties: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, value = _split(line, f"{source}: line {number}")
        if key in properties:
            raise KafkaConfigError(f"{source}: line {number}: {key} is given twice "
                                   f"(first on line {first_line[key]})")
        properties[key] = value
        first_line[key] = number
    check_properties(properties, source)
    return properties


def _split(line: str, where: str) -> tuple[str, str]:
    key, sep, value = line.partition("=")
    key, value = key.strip(), value.strip()
    if not sep:
        raise KafkaConfigError(f"{where}: expected key=value")  # the line itself may be a secret
    if not KEY.match(key):
        raise KafkaConfigError(f"{where}: {key[:64]!r} is not a property name (like security.protocol)")
    key = ALIASES.get(key, key)
    if not value:
        raise KafkaConfigError(f"{where}: {key} has no value")
    return key, value


def check_properties(properties: Mapping[str, str], source: str) -> None:
    """Check the properties patchgate knows the meaning of; leave the rest to librdkafka."""
    protocol = properties.get("security.protocol", "plaintext").lower()
    _one_of(properties, "security.protocol", protocol, SECURITY_PROTOCOLS, source)
    _one_of(properties, "ssl.endpoint.identification.algorithm",
            properties.get("ssl.endpoint.identification.algorithm", "https").lower(), ENDPOINT_IDENTIFICATION, source)
    if protocol.startswith("sasl"):
        mechanism = properties.get("sasl.mechanisms", "GSSAPI").upper()
        _one_of(properties, "sasl.mechanisms", mechanism, SASL_MECHANISMS, source)
        if mechanism in PASSWORD_MECHANISMS:
            for key in ("sasl.username", "sasl.password"):
                if key not in properties:
                    raise KafkaConfigError(f"{source}: {key} is required with sasl.mechanisms={mechanism}")
        if mechanism == "OAUTHBEARER":
            oidc_settings(properties, source)
    for key in FILE_KEYS:
        if key in properties and not Path(properties[key]).is_file():
            raise KafkaConfigError(f"{source}: {key}: not a readable file: {properties[key]}")


def _one_of(properties: Mapping[str, str], key: str, value: str, allowed: tuple[str, ...], source: str) -> None:
    if value not in allowed:
        raise KafkaConfigError(f"{source}: {key}: must be one of {', '.join(allowed)}, "
                               f"got {shown(key, properties.get(key))}")


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """SASL/OAUTHBEARER through the OIDC client-credentials grant, from librdkafka's property names.

    ``ca_file`` (``https.ca.location``) verifies the token endpoint's certificate: it is not the
    brokers' CA (``ssl.ca.location``), since an identity provider's certificate usually comes from
    another CA than the brokers'; without it the system's CAs are used, as librdkafka does.
    """

    client_id: str
    client_secret: str = field(repr=False)
    token_url: str
    scope: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)
    ca_file: str | None = None


def oidc_settings(properties: Mapping[str, str], source: str) -> OidcSettings:
    """The OIDC settings of ``sasl.mechanisms=OAUTHBEARER`` properties; KafkaConfigError names what is wrong."""
    method = properties.get("sasl.oauthbearer.method", "default").lower()
    if method != "oidc":
        raise KafkaConfigError(f"{source}: sasl.mechanisms=OAUTHBEARER needs sasl.oauthbearer.method=oidc "
                               "(OIDC client credentials); unsecured JWTs (librdkafka's default method) are refused")
    if "sasl.oauthbearer.config" in properties:
        raise KafkaConfigError(f"{source}: sasl.oauthbearer.config configures unsecured JWTs, not OIDC: remove it")
    grant = properties.get("sasl.oauthbearer.grant.type", "client_credentials")
    if grant != "client_credentials":
        raise KafkaConfigError(f"{source}: sasl.oauthbearer.grant.type: only client_credentials is supported, "
                               f"got {grant!r}")
    for key in OIDC_REQUIRED:
        if key not in properties:
            raise KafkaConfigError(f"{source}: {key} is required with sasl.oauthbearer.method=oidc")
    return OidcSettings(
        client_id=properties["sasl.oauthbearer.client.id"],
        client_secret=properties["sasl.oauthbearer.client.secret"],
        token_url=_token_url(properties["sasl.oauthbearer.token.endpoint.url"], source),
        scope=properties.get("sasl.oauthbearer.scope"),
        extensions=_extensions(properties.get("sasl.oauthbearer.extensions"), source),
        ca_file=properties.get("https.ca.location"),
    )


def _token_url(url: str, source: str) -> str:
    """An https URL, or http to a loopback address (a token and the client secret cross no network)."""
    key = "sasl.oauthbearer.token.endpoint.url"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError for a bad port
    except ValueError:
        raise KafkaConfigError(f"{source}: {key}: not a URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise KafkaConfigError(f"{source}: {key}: must be an https:// URL, got {url[:100]!r}")
    if parts.username is not None or parts.password is not None:
        raise KafkaConfigError(f"{source}: {key}: must not carry credentials (use sasl.oauthbearer.client.id "
                               "and sasl.oauthbearer.client.secret)")
    if parts.scheme == "http" and not _loopback(host):
        raise KafkaConfigError(f"{source}: {key}: must be https:// (http:// only to a loopback address, "
                               f"for tests), got {url[:100]!r}")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _extensions(text: str | None, source: str) -> dict[str, str]:
    """librdkafka's ``key=value,key=value`` SASL extensions (Confluent Cloud: logicalCluster, identityPoolId)."""
    extensions: dict[str, str] = {}
    if text is None:
        return extensions
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not EXTENSION_KEY.match(key) or key == "auth" or not EXTENSION_VALUE.match(value):
            raise KafkaConfigError(f"{source}: sasl.oauthbearer.extensions: expected key=value,key=value "
                                   f"(letters for keys, printable values), got {item.strip()[:64]!r}")
        extensions[key] = value
    return extensions


def load_properties(path: Path) -> dict[str, str]:
    """Read and parse a client properties file (at most 64 KiB of UTF-8)."""
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise KafkaConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise KafkaConfigError(f"{path}: larger than {MAX_FILE_BYTES} bytes: not a client properties file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KafkaConfigError(f"{path}: not UTF-8 text") from None
    return parse_properties(text, str(path))


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """Bootstrap servers and the client properties every librdkafka client of a component starts from."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    properties: Mapping[str, str] = field(default_factory=dict)
    source: str | None = None  # the properties file, for messages

    def __post_init__(self) -> None:
        if not self.bootstrap.strip():
            raise KafkaConfigError("the Kafka bootstrap servers must not be empty")
        object.__setattr__(self, "properties", dict(self.properties))  # a copy: the caller's dict may change

    @classmethod
    def load(cls, bootstrap: str | None, path: Path | None) -> KafkaConfig:
        """``bootstrap`` (when given) over the file's ``bootstrap.servers`` over the default."""
        properties = load_properties(path) if path is not None else {}
        chosen = bootstrap or properties.get("bootstrap.servers") or DEFAULT_BOOTSTRAP
        return cls(chosen, properties, str(path) if path is not None else None)

    def client_config(self, own: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The file's properties, the bootstrap servers, then the component's ``own`` settings on top."""
        return {**self.properties, "bootstrap.servers": self.bootstrap, **(own or {})}

    @property
    def security_protocol(self) -> str:
        return self.properties.get("security.protocol", "plaintext").lower()

    @property
    def sasl_mechanism(self) -> str | None:
        """The SASL mechanism (upper case) when the protocol is SASL_*, else None."""
        if not self.security_protocol.startswith("sasl"):
            return None
        return self.properties.get("sasl.mechanisms", "GSSAPI").upper()

    def oidc(self) -> OidcSettings | None:
        """The OIDC client-credentials settings when the client authenticates with OAUTHBEARER."""
        if self.sasl_mechanism != "OAUTHBEARER":
            return None
        return oidc_settings(self.properties, self.source or "Kafka configuration")

    def redacted(self) -> dict[str, str]:
        return {key: REDACTED if is_secret(key) else value for key, value in self.properties.items()}

    def __repr__(self) -> str:
        return f"KafkaConfig(bootstrap={self.bootstrap!r}, properties={self.redacted()!r}, source={self.source!r})"

