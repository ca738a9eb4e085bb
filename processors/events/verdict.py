"""``patchgate.verdict/1``: the latest enforcement verdict for one server (key = server key).

Window rule: during ``block_minutes + throttle_minutes`` minutes of each hour the server gets a
reply instead of acceptance, in one window that starts at minute ``window_offset`` of the UTC hour,
block minutes first (:func:`window_position`, :func:`window_action`).

The worker builds a verdict in two halves (:func:`verdict_parts`) because its ``sequence`` is
assigned inside Redis when the verdict is committed (``commit_verdict.lua`` writes
``prefix + sequence + suffix``); :func:`join_verdict` does the same in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, NotRequired, TypedDict

import orjson

from processors.contracts import VERDICT_SCHEMA, contracts
from processors.events.times import rfc3339
from processors.events.wire import decode_checked

ACCEPT = "accept"
THROTTLE = "throttle"
BLOCK = "block"


class RecommendedBuild(TypedDict):
    short: str
    long: str
    name: str | None


class Replies(TypedDict):
    throttle: str
    block: str


class ProductStamp(TypedDict):
    """The optional v1 fields of verdicts and notifications: the product whose stamp decided, and its version."""

    product_id: NotRequired[str | None]
    version: NotRequired[str | None]


class ShadowFlag(TypedDict):
    """The optional v1 field of verdicts and notifications that marks shadow mode.

    Written only when true (absent means false), so the records of tenants not in shadow mode are
    unchanged byte for byte and consumers of the first v1 schema keep reading them.
    """

    shadow: NotRequired[bool]


class Verdict(ProductStamp, ShadowFlag):
    schema: str
    server_key: str
    tenant_id: str
    server: str
    sequence: int
    issued_at: str
    effective_at: str
    valid_until: str | None
    stage: int
    throttle_minutes: int
    block_minutes: int
    window_offset: int
    replies: Replies
    paused_until: str | None
    product: str | None
    build: str | None
    status: str
    rule: str
    recommended_builds: list[RecommendedBuild]
    client_ips: list[str]


class VerdictParts(NamedTuple):
    """A verdict's JSON without its sequence: ``prefix + b"<sequence>" + suffix`` is the record."""

    prefix: bytes
    suffix: bytes


def recommended_build(entry: Mapping[str, Any]) -> RecommendedBuild:
    """One entry of ``recommended_builds`` from a catalog or state mapping with these keys."""
    return {"short": str(entry.get("short")), "long": str(entry.get("long")), "name": entry.get("name")}


def verdict_parts(*, server_key: str, tenant_id: str, server: str, issued_at: datetime, effective_at: datetime,
                  valid_until: datetime | None, stage: int, throttle_minutes: int, block_minutes: int,
                  window_offset: int, throttle_reply: str, block_reply: str, paused_until: datetime | None,
                  product: str | None, build: str | None, status: str, rule: str,
                  recommended_builds: Sequence[RecommendedBuild], client_ips: Sequence[str],
                  product_id: str | None = None, version: str | None = None,
                  shadow: bool = False) -> VerdictParts:
    """The verdict's two halves around its ``sequence`` (see the module docstring); ``shadow``
    (the tenant is in shadow mode: edges accept and count the reply) adds ``"shadow": true``."""
    before = {"schema": VERDICT_SCHEMA, "server_key": server_key, "tenant_id": tenant_id, "server": server}
    after = {
        "issued_at": rfc3339(issued_at),
        "effective_at": rfc3339(effective_at),
        "valid_until": rfc3339(valid_until),
        "stage": stage,
        "throttle_minutes": throttle_minutes,
        "block_minutes": block_minutes,
        "window_offset": window_offset,
        "replies": {"throttle": throttle_reply, "block": block_reply},
        "paused_until": rfc3339(paused_until),
        "product": product,
        "build": build,
        "product_id": product_id,
        "version": version,
        "status": status,
        "rule": rule,
        "recommended_builds": list(recommended_builds),
        "client_ips": list(client_ips),
    }
    if shadow:
        after["shadow"] = True
    return VerdictParts(orjson.dumps(before)[:-1] + b',"sequence":', b"," + orjson.dumps(after)[1:])


def join_verdict(parts: VerdictParts, sequence: int) -> bytes:
    """The verdict record with ``sequence`` filled in, as ``commit_verdict.lua`` stores it."""
    return parts.prefix + str(sequence).encode() + parts.suffix


def parse_verdict(data: bytes) -> Verdict:
    """A verdict from its JSON, checked against its contract; raises ``orjson.JSONDecodeError`` or
    ``ContractError``. (An edge compiles verdicts leniently instead: :mod:`edge.verdicts`.)"""
    return decode_checked(data, contracts.verdict)  # type: ignore[no-any-return]


def window_position(minute: int, window_offset: int) -> int:
    """Where ``minute`` (of the UTC hour, or since the epoch: equal modulo 60) falls in the hourly window cycle."""
    return (minute - window_offset) % 60


def window_action(position: int, block_minutes: int, throttle_minutes: int) -> str:
    """:data:`BLOCK`, :data:`THROTTLE` or :data:`ACCEPT` at ``position`` of the cycle."""
    if position < block_minutes:
        return BLOCK
    if position < block_minutes + throttle_minutes:
        return THROTTLE
    return ACCEPT
