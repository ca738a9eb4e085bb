"""Builders of realistic metadata events for the worker tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson


def exchange_hop(server: str, build: str, at: datetime, sender: str = "EX-MBX01.corp.local") -> str:
    return (f"from {sender} (10.0.0.5) by {server} (10.0.0.6) with Microsoft SMTP Server "
            f"(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id {build}; "
            f"{format_datetime(at - timedelta(seconds=1))}")


def postfix_hop(relay: str, at: datetime) -> str:
    return (f"from ex01.corp.local (ex01.corp.local [10.0.0.7]) by {relay} (Postfix) with ESMTPS id 4XyZ1n2QJb; "
            f"{format_datetime(at - timedelta(seconds=1))}")


def metadata_event(event_id: str, at: datetime, *, tenant: str = "contoso", server: str = "ex01.contoso.com",
                   build: str | None = "15.1.2507.39", hops: list[str] | None = None, ip: str = "203.0.113.10",
                   connector_type: str = "OnPremises", helo: str | None = None) -> dict[str, Any]:
    if hops is None:
        hops = [exchange_hop(server, build, at)] if build else [
            f"from {server} ({ip}) by {server} with ESMTP; {format_datetime(at)}"]
    return {
        "schema": "patchgate.metadata/1",
        "event_id": event_id,
        "observed_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "edge": "mx1.example.net",
        "tenant_id": tenant,
        "connector": {"id": f"{tenant}-{connector_type.lower()}", "type": connector_type},
        "client": {"ip": ip, "helo": helo or server},
        "message": {"id": f"<{event_id}@{server}>", "size": 2048, "recipients": 1},
        "headers": [["Received", hop] for hop in hops] + [["X-MS-Exchange-Organization-AuthAs", "Internal"]],
    }


def batch_envelope(server_key: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": "patchgate.metadata-batch/1", "server_key": server_key, "records": records}


def encode(document: Any) -> bytes:
    return orjson.dumps(document)
