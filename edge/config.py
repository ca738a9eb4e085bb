"""The edge configuration file (TOML): who this edge is and which connectors it knows.

Example::

    [edge]
    name = "edge-1"                          # appears in metadata event ids and records
    service_name = "Exchange Online"         # informational; reply texts come from the verdicts
    enforce_connector_types = ["OnPremises"] # default; connectors of other types are only reported

    [[connector]]
    id = "contoso-onprem"
    tenant_id = "contoso"
    type = "OnPremises"                      # "OnPremises" | "Partner" | "Internal"
    client_ips = ["192.0.2.0/24", "2001:db8:10::/48"]
    tls_cert_subjects = ["mail.contoso.com", "*.contoso.net"]

A connector matches a client whose IP lies in one of ``client_ips`` *or* whose TLS client
certificate subject (its CN, as Postfix passes it in ``{cert_subject}``/``ccert_subject``) equals one
of ``tls_cert_subjects`` (``*.example.com`` matches any name below ``example.com``), like Exchange
Online inbound connectors. Connectors are tried in file order; the first match wins. A client no
connector matches is neither enforced nor published, only counted.

Errors name the file, the table and the field: ``edge.toml: connector[2] (id 'x'): client_ips[0]:
'10.0.0.300/8' is not an IP network``.
"""

from __future__ import annotations

import functools
import ipaddress
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processors.errors import PatchgateError

CONNECTOR_TYPES = ("OnPremises", "Partner", "Internal")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ConfigError(PatchgateError, ValueError):
    """The edge configuration is invalid; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Connector:
    id: str
    tenant_id: str
    type: str
    client_ips: tuple[IPNetwork, ...] = ()
    tls_cert_subjects: tuple[str, ...] = ()

    def matches_ip(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.client_ips)

    def matches_subject(self, subject: str) -> bool:
        for pattern in self.tls_cert_subjects:
            if pattern.startswith("*."):
                if subject.endswith(pattern[1:]) and len(subject) > len(pattern) - 1:
                    return True
            elif subject == pattern:
                return True
        return False


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    name: str = "edge"
    service_name: str = "Exchange Online"
    enforce_connector_types: frozenset[str] = frozenset({"OnPremises"})
    connectors: tuple[Connector, ...] = ()
    _ip_cache: dict[str, Connector | None] = field(default_factory=dict, compare=False, repr=False)

    def in_scope(self, connector: Connector | None) -> bool:
        """Whether verdicts are enforced for mail arriving over ``connector``."""
        return connector is not None and connector.type in self.enforce_connector_types

    def rules_out(self, ip: str | None) -> bool:
        """Whether no connector can match a client at ``ip``, whatever TLS certificate it shows later.

        True only when no connector names certificate subjects and none covers the IP: then the
        milter can let the whole connection go at CONNECT (the certificate is known only after
        STARTTLS, which the MTA reports at HELO, after CONNECT).
        """
        if ip is None or any(c.tls_cert_subjects for c in self.connectors):
            return False
        return self.match(ip) is None

    def match(self, ip: str | None, cert_subject: str | None = None) -> Connector | None:
        """First connector matching the client IP or TLS certificate subject, else None."""
        subject = normalise_subject(cert_subject) if cert_subject else None
        if subject is None:
            if ip is None:
                return None
            cache = self._ip_cache
            if ip in cache:
                return cache[ip]
            found = self._match(parse_ip(ip), None)
            if len(cache) > 50_000:
                cache.clear()
            cache[ip] = found
            return found
        return self._match(parse_ip(ip) if ip else None, subject)

    def _match(self, addr: IPAddress | None, subject: str | None) -> Connector | None:
        for c in self.connectors:
            if addr is not None and c.matches_ip(addr):
                return c
            if subject is not None and c.matches_subject(subject):
                return c
        return None


def parse_ip(text: str) -> IPAddress | None:
    """An IP address from Postfix's notations (``IPv6:`` prefix, IPv4-mapped IPv6), else None."""
    t = text.strip()
    if t[:5].lower() == "ipv6:":
        t = t[5:]
    if t.startswith("[") and t.endswith("]"):
        t = t[1:-1]
    try:
        addr = ipaddress.ip_address(t)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@functools.lru_cache(maxsize=4096)
def normalise_ip(text: str) -> str | None:
    """The canonical text of a client address as an MTA hands it over, else None.

    ``[192.0.2.10]`` -> ``192.0.2.10``, ``IPv6:2001:DB8::5`` -> ``2001:db8::5``, ``::ffff:192.0.2.10``
    -> ``192.0.2.10``: the same address :meth:`EdgeConfig.match` matches connectors on, so what is
    published, learned and looked up is what was matched.
    """
    addr = parse_ip(text)
    return None if addr is None else str(addr)


def normalise_subject(subject: str) -> str:
    """The CN of a certificate subject, lower-cased (accepts a bare CN or a DN with ``CN=``)."""
    s = subject.strip()
    for part in s.replace("/", ",").split(","):
        part = part.strip()
        if part[:3].upper() == "CN=":
            s = part[3:]
            break
    return s.strip().rstrip(".").lower()


_EDGE_KEYS = {"name", "service_name", "enforce_connector_types"}
_CONNECTOR_KEYS = {"id", "tenant_id", "type", "client_ips", "tls_cert_subjects"}


def _str(where: str, table: dict[str, Any], key: str, *, required: bool, default: str = "") -> str:
    value = table.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: {key}: missing")
        return default
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key}: expected a non-empty string, got {value!r}")
    return value.strip()


def _str_list(where: str, table: dict[str, Any], key: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key}: expected a list of strings, got {value!r}")
    return value


def _unknown(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)} "
                          f"(allowed: {', '.join(sorted(allowed))})")


def parse_config(data: dict[str, Any], source: str = "edge config") -> EdgeConfig:
    """Validate decoded TOML into an :class:`EdgeConfig`."""
    _unknown(source, data, {"edge", "connector"})
    edge = data.get("edge", {})
    if not isinstance(edge, dict):
        raise ConfigError(f"{source}: [edge] must be a table")
    where = f"{source}: [edge]"
    _unknown(where, edge, _EDGE_KEYS)
    name = _str(where, edge, "name", required=False, default="edge")
    if any(ch in name for ch in ": \t\n/"):
        raise ConfigError(f"{where}: name: must not contain ':', '/' or whitespace, got {name!r}")
    service = _str(where, edge, "service_name", required=False, default="Exchange Online")
    scope = _str_list(where, edge, "enforce_connector_types") if "enforce_connector_types" in edge \
        else ["OnPremises"]
    for t in scope:
        if t not in CONNECTOR_TYPES:
            raise ConfigError(f"{where}: enforce_connector_types: unknown type {t!r} "
                              f"(known: {', '.join(CONNECTOR_TYPES)})")
    raw_connectors = data.get("connector", [])
    if not isinstance(raw_connectors, list):
        raise ConfigError(f"{source}: connector: use [[connector]] tables")
    connectors: list[Connector] = []
    seen: set[str] = set()
    for i, c in enumerate(raw_connectors):
        where = f"{source}: connector[{i}]"
        if not isinstance(c, dict):
            raise ConfigError(f"{where}: must be a table")
        cid = _str(where, c, "id", required=True)
        where = f"{where} (id {cid!r})"
        _unknown(where, c, _CONNECTOR_KEYS)
        if cid in seen:
            raise ConfigError(f"{where}: id: duplicate connector id")
        seen.add(cid)
        tenant = _str(where, c, "tenant_id", required=True)
        if "/" in tenant or any(ch.isspace() for ch in tenant):
            raise ConfigError(f"{where}: tenant_id: must not contain '/' or whitespace, got {tenant!r}")
        ctype = _str(where, c, "type", required=True)
        if ctype not in CONNECTOR_TYPES:
            raise ConfigError(f"{where}: type: unknown connector type {ctype!r} "
                              f"(known: {', '.join(CONNECTOR_TYPES)})")
        nets: list[IPNetwork] = []
        for j, text in enumerate(_str_list(where, c, "client_ips")):
            try:
                nets.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"{where}: client_ips[{j}]: {text!r} is not an IP network") from None
        subjects: list[str] = []
        for j, text in enumerate(_str_list(where, c, "tls_cert_subjects")):
            s = text.strip().rstrip(".").lower()
            if not s or " " in s or (s.startswith("*") and not s.startswith("*.")) or "*" in s[1:]:
                raise ConfigError(f"{where}: tls_cert_subjects[{j}]: {text!r} is not a host name "
                                  "or '*.domain' pattern")
            subjects.append(s)
        if not nets and not subjects:
            raise ConfigError(f"{where}: needs client_ips and/or tls_cert_subjects")
        connectors.append(Connector(cid, tenant, ctype, tuple(nets), tuple(subjects)))
    return EdgeConfig(name=name, service_name=service, enforce_connector_types=frozenset(scope),
                      connectors=tuple(connectors))


def load_config(path: str | Path) -> EdgeConfig:
    """Read and validate a TOML edge configuration file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    return parse_config(data, str(p))


def config_from_connectors(connectors: Sequence[Connector], *, name: str = "edge",
                           scope: Sequence[str] = ("OnPremises",)) -> EdgeConfig:
    """Build a config in code (tests, embedding)."""
    return EdgeConfig(name=name, enforce_connector_types=frozenset(scope), connectors=tuple(connectors))
