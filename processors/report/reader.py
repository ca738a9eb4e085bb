"""Reading report data through the state store: one round trip per ``chunk`` servers.

For each server the store reads its hash, its IP and HELO sets and its messages per day of the last
30 days (:meth:`processors.state.protocol.Store.server_reports`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from processors.enforcement.policy import EnforcementPolicy
from processors.report.model import (
    HISTORY_DAYS,
    PauseSummary,
    ServerRow,
    build_row,
    day_keys,
    pause_summary,
)
from processors.state.keys import NOTIFICATIONS_KEPT
from processors.state.protocol import Store

CHUNK = 200


def _stage_order(item: tuple[str, int]) -> int:
    return int(item[0]) if item[0].isdigit() else -1


@dataclass(frozen=True, slots=True)
class TenantSummary:
    tenant_id: str
    servers: int
    stages: dict[str, int]
    pause: PauseSummary
    shadow: bool = False  # in shadow mode by the policy (``[shadow]``)

    def to_json(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "servers": self.servers, "stages": self.stages,
                "pause": self.pause.to_json(), "shadow": self.shadow}


class ReportReader:
    def __init__(self, store: Store, policy: EnforcementPolicy, chunk: int = CHUNK) -> None:
        self.store = store
        self.policy = policy
        self.chunk = chunk

    async def server_keys(self, tenant: str) -> list[str]:
        return await self.store.tenant_servers(tenant)

    async def rows(self, tenant: str, now: datetime, days: int = HISTORY_DAYS) -> list[ServerRow]:
        """Every server of ``tenant`` as a report row at ``now``, sorted by stage (desc) then name."""
        server_keys = await self.server_keys(tenant)
        return await self.rows_for(server_keys, now, days)

    async def rows_for(self, server_keys: Sequence[str], now: datetime, days: int = HISTORY_DAYS) -> list[ServerRow]:
        reports = await self.store.server_reports(server_keys, day_keys(now, days), self.chunk)
        rows = [build_row(r.server_key, r.fields, r.ips, r.helos, r.counts, self.policy, now) for r in reports]
        rows.sort(key=lambda row: (-row.stage, row.ServerFQDN))
        return rows

    async def pause(self, tenant: str, now: datetime) -> PauseSummary:
        state = (await self.store.pause_states([tenant]))[tenant]
        return pause_summary(tenant, state, self.policy, now)

    async def notifications(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        limit = max(1, min(limit, NOTIFICATIONS_KEPT))
        out: list[dict[str, Any]] = []
        for raw in await self.store.notifications(tenant, limit):
            try:
                document = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(document, dict):
                out.append(document)
        return out

    async def tenants(self) -> list[str]:
        return await self.store.tenants()

    async def tenant_known(self, tenant: str) -> bool:
        return await self.store.tenant_known(tenant)

    async def summaries(self, now: datetime) -> list[TenantSummary]:
        """Per tenant: number of servers, servers per committed stage, pause state (few round trips)."""
        tenants = await self.tenants()
        overview = await self.store.tenant_overview(tenants)
        flat = [(tenant, key) for tenant, (members, _) in zip(tenants, overview, strict=True) for key in members]
        stages: dict[str, dict[str, int]] = {tenant: {} for tenant in tenants}
        for (tenant, _), stage in zip(flat, await self.store.server_stages([k for _, k in flat], self.chunk * 5),
                                      strict=True):
            name = stage if stage is not None else "0"
            stages[tenant][name] = stages[tenant].get(name, 0) + 1
        return [
            TenantSummary(tenant, len(members), dict(sorted(stages[tenant].items(), key=_stage_order)),
                          pause_summary(tenant, pause, self.policy, now), self.policy.shadow.applies_to(tenant))
            for tenant, (members, pause) in zip(tenants, overview, strict=True)
        ]
