"""What the worker checks before a metadata record may touch state: the rules JSON Schema cannot say.

The schema (``schemas/metadata.v1.json``) checks shapes, lengths and character sets; these checks
add what needs parsing or context:

- the Kafka key ``<tenant_id>/<server>`` is the authority for the tenant (in the per-tenant topic
  mode the topic is, and the key must agree with it); a record naming another tenant is refused;
- ``client.ip`` is an address :mod:`ipaddress` parses, written in its canonical form (what
  ``str(ipaddress.ip_address(x))`` gives): a ``[192.0.2.10]`` or ``IPv6:2001:db8::5`` form is
  refused, so it never reaches state and verdicts, where an edge could not match it;
- ``observed_at`` is at most ``max_future_s`` after the broker's timestamp of its Kafka message
  (event time against the log's time, never the worker's clock); the schema already bounds it to
  the years 2000-2099;
- host names are LDH (letters, digits, hyphens, plus the underscore of internal Windows names) or
  IDNA, at most 63 characters per label and 253 in total. The server name the worker derives
  must be one (or an IP address); HELO and PTR names are context, so a bad one is dropped from
  the record (and counted), never a reason to refuse it.

Every refusal is an :class:`Admission` error whose reason starts with a fixed category before the
first ``:`` (the dead-letter metric's label).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from processors.errors import PatchgateError

TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
KEY_SERVER_MAX = 255
HOST_MAX = 253
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z", re.IGNORECASE)


class Refused(PatchgateError, ValueError):
    """A record (or a whole Kafka message) must be dead-lettered; ``str()`` is the reason.

    ``path`` names the offending JSON value when the refusal is about the document's shape.
    """

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(reason)
        self.path = path


def key_parts(key: bytes | None) -> tuple[str, str]:
    """``(tenant_id, server)`` from a Kafka key ``<tenant_id>/<server>``; :class:`Refused` otherwise."""
    if key is None:
        raise Refused("key: the message has no Kafka key; expected '<tenant_id>/<server>'")
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("key: the Kafka key is not UTF-8") from None
    tenant, slash, server = text.partition("/")
    if not slash or not TENANT_ID.match(tenant) or not server or len(server) > KEY_SERVER_MAX:
        raise Refused(f"key: expected '<tenant_id>/<server>', got {text[:120]!r}")
    return tenant, server.lower()


def topic_tenant(topic: str, pattern: re.Pattern[str]) -> str:
    """The tenant a per-tenant metadata topic belongs to; :class:`Refused` for any other topic."""
    match = pattern.match(topic)
    if match is None:
        raise Refused(f"topic: {topic!r} is not a tenant's metadata topic (per-tenant topic mode)")
    return match.group(1)


MEMO_SIZE = 65_536  # names and addresses repeat per server: remember the answers (bounded, LRU)


@lru_cache(maxsize=MEMO_SIZE)
def is_host_name(name: str) -> bool:
    """True for an LDH or IDNA host name within the DNS length limits (a trailing dot allowed)."""
    if not name or len(name) > HOST_MAX + 1:
        return False
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return False
    name = name[:-1] if name.endswith(".") else name
    return 0 < len(name) <= HOST_MAX and all(_LABEL.match(label) for label in name.split("."))


@lru_cache(maxsize=MEMO_SIZE)
def is_canonical_ip(value: str) -> bool:
    """True if ``value`` is an IPv4 or IPv6 address written exactly as :mod:`ipaddress` writes it (no zone)."""
    if "%" in value:
        return False
    try:
        return str(ipaddress.ip_address(value)) == value
    except ValueError:
        return False


def is_server_name(name: str) -> bool:
    """A server name state and verdicts may carry: a host name or an IP address."""
    return is_host_name(name) or is_canonical_ip(name)


def check_ip(value: str) -> None:
    if not is_canonical_ip(value):
        raise Refused(f"client ip: {value[:80]!r} is not an IP address in canonical form "
                      "(like 192.0.2.10 or 2001:db8::5, no brackets, no IPv6: prefix)")


def event_time_limit(broker_timestamp: float | None, max_future_s: float) -> datetime | None:
    """The latest event time a message stamped ``broker_timestamp`` by the broker may carry."""
    if broker_timestamp is None or broker_timestamp <= 0:
        return None  # no broker time: the schema's 2000-2099 window is the only bound
    return datetime.fromtimestamp(broker_timestamp, UTC) + timedelta(seconds=max_future_s)


def check_event_time(observed_at: datetime, limit: datetime | None) -> None:
    """Refuse an event time after ``limit`` (see :func:`event_time_limit`)."""
    if limit is not None and observed_at > limit:
        raise Refused(f"event time: observed_at {observed_at.isoformat()} lies after {limit.isoformat()}, "
                      "the broker's timestamp of the message plus the allowed skew")
