"""Reading report data from Redis with pipelines: one round trip per ``chunk`` servers.

For each server the pipeline carries HGETALL of the hash, SMEMBERS of the IP and HELO sets and one
PFCOUNT per day of the last 30 days (HyperLogLog of event ids: messages per day).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from processors.enforcement.policy import EnforcementPolicy
from processors.report.model import (
    HISTORY_DAYS,
    PauseSummary,
    ServerRow,
    build_row,
    day_keys,
    pause_summary,
)
from processors.state.keys import NOTIFICATIONS_KEPT, KeySchema
from processors.state.store import pause_state_from_hash

CHUNK = 200


def _stage_order(item: tuple[str, int]) -> int:
    return int(item[0]) if item[0].isdigit() else -1


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class TenantSummary:
    tenant_id: str
    servers: int
    stages: dict[str, int]
    pause: PauseSummary

    def to_json(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "servers": self.servers, "stages": self.stages,
                "pause": self.pause.to_json()}


class ReportReader:
    def __init__(self, client: aioredis.Redis, keys: KeySchema, policy: EnforcementPolicy,
                 chunk: int = CHUNK) -> None:
        self.client = client
        self.keys = keys
        self.policy = policy
        self.chunk = chunk

    async def server_keys(self, tenant: str) -> list[str]:
        return sorted(_text(m) for m in await self.client.smembers(self.keys.tenant_servers(tenant)))

    async def rows(self, tenant: str, now: datetime, days: int = HISTORY_DAYS) -> list[ServerRow]:
        """Every server of ``tenant`` as a report row at ``now``, sorted by stage (desc) then name."""
        server_keys = await self.server_keys(tenant)
        return await self.rows_for(server_keys, now, days)

    async def rows_for(self, server_keys: Sequence[str], now: datetime, days: int = HISTORY_DAYS) -> list[ServerRow]:
        dates = day_keys(now, days)
        rows: list[ServerRow] = []
        per_server = 3 + len(dates)
        for start in range(0, len(server_keys), self.chunk):
            part = server_keys[start:start + self.chunk]
            pipe = self.client.pipeline(transaction=False)
            for server_key in part:
                pipe.hgetall(self.keys.server(server_key))
                pipe.smembers(self.keys.server_ips(server_key))
                pipe.smembers(self.keys.server_helos(server_key))
                for day in dates:
                    pipe.pfcount(self.keys.server_day_hll(server_key, day))
            results = await pipe.execute()
            for index, server_key in enumerate(part):
                base = index * per_server
                raw_hash = results[base]
                if not raw_hash:
                    continue  # listed in the tenant set but its state is gone
                fields = {_text(k): _text(v) for k, v in raw_hash.items()}
                ips = [_text(ip) for ip in results[base + 1]]
                helos = [_text(h) for h in results[base + 2]]
                counts = [(day, int(results[base + 3 + n])) for n, day in enumerate(dates)]
                rows.append(build_row(server_key, fields, ips, helos, counts, self.policy, now))
        rows.sort(key=lambda row: (-row.stage, row.ServerFQDN))
        return rows

    async def pause(self, tenant: str, now: datetime) -> PauseSummary:
        raw = await self.client.hgetall(self.keys.tenant_pause(tenant))
        return pause_summary(tenant, pause_state_from_hash(raw), self.policy, now)

    async def notifications(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        limit = max(1, min(limit, NOTIFICATIONS_KEPT))
        raws = await self.client.lrange(self.keys.tenant_notifications(tenant), 0, limit - 1)
        out: list[dict[str, Any]] = []
        for raw in raws:
            try:
                document = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(document, dict):
                out.append(document)
        return out

    async def tenants(self) -> list[str]:
        return sorted(_text(m) for m in await self.client.smembers(self.keys.tenants))

    async def tenant_known(self, tenant: str) -> bool:
        return bool(await self.client.sismember(self.keys.tenants, tenant))

    async def summaries(self, now: datetime) -> list[TenantSummary]:
        """Per tenant: number of servers, servers per committed stage, pause state (few round trips)."""
        tenants = await self.tenants()
        pipe = self.client.pipeline(transaction=False)
        for tenant in tenants:
            pipe.smembers(self.keys.tenant_servers(tenant))
            pipe.hgetall(self.keys.tenant_pause(tenant))
        results = await pipe.execute()
        members = {tenant: sorted(_text(m) for m in results[2 * i]) for i, tenant in enumerate(tenants)}
        pauses = {tenant: results[2 * i + 1] for i, tenant in enumerate(tenants)}
        stages: dict[str, dict[str, int]] = {tenant: {} for tenant in tenants}
        flat = [(tenant, key) for tenant in tenants for key in members[tenant]]
        for start in range(0, len(flat), self.chunk * 5):
            part = flat[start:start + self.chunk * 5]
            pipe = self.client.pipeline(transaction=False)
            for _, server_key in part:
                pipe.hget(self.keys.server(server_key), "stage")
            for (tenant, _), stage in zip(part, await pipe.execute(), strict=True):
                name = _text(stage) if stage is not None else "0"
                stages[tenant][name] = stages[tenant].get(name, 0) + 1
        return [
            TenantSummary(tenant, len(members[tenant]),
                          dict(sorted(stages[tenant].items(), key=_stage_order)),
                          pause_summary(tenant, pause_state_from_hash(pauses[tenant]), self.policy, now))
            for tenant in tenants
        ]
