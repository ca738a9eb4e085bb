"""``patchgate.notification/1``: something a tenant's admin should hear about (key = tenant id).

:func:`notification` is the one place its fields are spelled: enforcement builds the per-server
ones (detected, stage changes, remediated), the worker the tenant-wide pause ones.
``notification_id`` is deterministic (:func:`notification_id`), so consumers drop duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from processors.contracts import NOTIFICATION_SCHEMA, contracts
from processors.events.times import rfc3339
from processors.events.verdict import ProductStamp, RecommendedBuild, ShadowFlag
from processors.events.wire import decode_checked


class Notification(ProductStamp, ShadowFlag):
    schema: str
    notification_id: str
    tenant_id: str
    server: str | None
    server_key: str | None
    kind: str
    at: str
    stage: int | None
    next_stage_at: str | None
    build: str | None
    recommended_builds: list[RecommendedBuild]
    text: str


def notification_id(subject: str, kind: str, identity: str) -> str:
    """``<server key or tenant id>|<kind>|<identity>``: the same event always gets the same id."""
    return f"{subject}|{kind}|{identity}"


def notification(*, tenant_id: str, kind: str, identity: str, at: datetime, text: str,
                 server_key: str | None = None, server: str | None = None, stage: int | None = None,
                 next_stage_at: datetime | None = None, build: str | None = None, product_id: str | None = None,
                 version: str | None = None, recommended_builds: Sequence[RecommendedBuild] = (),
                 shadow: bool = False) -> Notification:
    """A server's notification (``server_key`` given) or a tenant-wide one (``server_key`` None);
    ``shadow`` (the tenant is in shadow mode) adds ``"shadow": true``."""
    record: Notification = {
        "schema": NOTIFICATION_SCHEMA,
        "notification_id": notification_id(server_key or tenant_id, kind, identity),
        "tenant_id": tenant_id,
        "server": server,
        "server_key": server_key,
        "kind": kind,
        "at": rfc3339(at) or "",
        "stage": stage,
        "next_stage_at": rfc3339(next_stage_at),
        "build": build,
        "product_id": product_id,
        "version": version,
        "recommended_builds": list(recommended_builds),
        "text": text,
    }
    if shadow:
        record["shadow"] = True
    return record


def parse_notification(data: bytes) -> Notification:
    """A notification from its JSON; raises ``orjson.JSONDecodeError`` or ``ContractError``."""
    return decode_checked(data, contracts.notification)  # type: ignore[no-any-return]
