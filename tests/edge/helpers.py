"""Shared builders for edge tests: verdict records and real-shaped Exchange headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

THROTTLE = ("450 4.7.230 Connecting Exchange server version is out-of-date; connection to Exchange Online "
            "throttled for {n} mins/hr. For more information see https://aka.ms/BlockUnsafeExchange.")
BLOCK = ("550 5.7.230 Connecting Exchange server version is out-of-date; connection to Exchange Online "
         "blocked for {n} mins/hr. For more information see https://aka.ms/BlockUnsafeExchange.")

# 2026-11-28T10:00:00Z: a whole hour, so minute arithmetic in tests is readable.
T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def verdict(server_key: str = "contoso/ex01.contoso.com", *, sequence: int = 1, stage: int = 2,
            throttle: int = 5, block: int = 0, offset: int = 0, effective_at: float = T0 - 3600,
            valid_until: float | None = None, paused_until: float | None = None,
            client_ips: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    tenant, server = server_key.split("/", 1)
    record: dict[str, Any] = {
        "schema": "patchgate.verdict/1",
        "server_key": server_key,
        "tenant_id": tenant,
        "server": server,
        "sequence": sequence,
        "issued_at": iso(effective_at),
        "effective_at": iso(effective_at),
        "valid_until": iso(valid_until) if valid_until is not None else None,
        "stage": stage,
        "throttle_minutes": throttle,
        "block_minutes": block,
        "window_offset": offset,
        "replies": {"throttle": THROTTLE.format(n=throttle), "block": BLOCK.format(n=block)},
        "paused_until": iso(paused_until) if paused_until is not None else None,
        "product": "Exchange Server 2016",
        "build": "15.1.2507.6",
        "status": "unsupported",
        "rule": "end_of_support",
        "recommended_builds": [{"short": "15.2.2562.53", "long": "15.02.2562.053",
                                "name": "Exchange Server SE RTM Sep26SUv2"}],
    }
    if client_ips is not None:
        record["client_ips"] = client_ips
    record.update(extra)
    return record


def verdict_bytes(**kw: Any) -> bytes:
    return orjson.dumps(verdict(**kw))


def exchange_received(by: str = "EX01.contoso.com", build: str = "15.1.2507.6",
                      frm: str = "EX02.contoso.com (10.0.0.6)", ip: str = "10.0.0.5") -> str:
    """A Received header as Exchange writes it (the build belongs to the host after ``by``)."""
    return (f"from {frm} by {by} ({ip}) with Microsoft SMTP Server (version=TLS1_2, "
            f"cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id {build}; Sat, 28 Nov 2026 10:00:00 +0000")


def exchange_headers(by: str = "EX01.contoso.com", build: str = "15.1.2507.6",
                     message_id: str = "<abc@contoso.com>") -> list[tuple[str, str]]:
    return [
        ("Received", exchange_received(by, build)),
        ("Received", "from EX02.contoso.com (10.0.0.6) by EX02.contoso.com (10.0.0.6) with Microsoft SMTP "
                     "Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id "
                     f"{build} via Mailbox Transport; Sat, 28 Nov 2026 09:59:59 +0000"),
        ("From", "Alice <alice@contoso.com>"),
        ("To", "bob@example.net"),
        ("Subject", "quarterly numbers"),
        ("Message-ID", message_id),
        ("X-MS-Exchange-Organization-AuthSource", "EX01.contoso.com"),
    ]
