"""Server state written into a real Redis the way the worker writes it.

The hash fields are those of ``observe.lua`` (tenant_id, server, first_seen, last_seen, evidence
fields, last_status, detected_at, ...) and ``commit_verdict.lua`` (verdict, fingerprint, stage,
issued_at, sequence); the verdict JSON is produced by the real, pure ``evaluate()`` of the
enforcement package, exactly as the worker would commit it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import redis.asyncio as aioredis

from processors.enforcement.pauses import PauseState
from processors.enforcement.policy import EnforcementPolicy
from processors.enforcement.verdicts import ServerState, evaluate
from processors.state.keys import KeySchema
from processors.state.store import pause_state_to_hash

E2016_RECOMMENDED = [{"short": "15.1.2507.61", "long": "15.01.2507.061", "name": "Exchange Server 2016 CU23 Oct25SU"}]


@dataclass
class SeedServer:
    tenant: str
    server: str
    detected_at: datetime | None
    status: str = "behind"
    rule: str = "baseline"
    product: str = "Exchange Server 2016"
    build: str = "15.1.2507.39"
    build_long: str = "15.01.2507.039"
    release_name: str = "Exchange Server 2016 CU23 Oct24SU"
    recommended: list[dict[str, Any]] = field(default_factory=lambda: list(E2016_RECOMMENDED))
    ips: list[str] = field(default_factory=lambda: ["203.0.113.25"])
    helos: list[str] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)  # YYYY-MM-DD -> messages that day
    connector_type: str = "OnPremises"
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    previous_stage: int | None = None  # a stage committed earlier (None: derive from evaluate)

    @property
    def key(self) -> str:
        return f"{self.tenant}/{self.server.lower()}"


async def seed_server(client: aioredis.Redis, keys: KeySchema, policy: EnforcementPolicy, spec: SeedServer,
                      now: datetime, pause: PauseState | None = None, sequence: int = 1) -> dict[str, str]:
    last_seen = spec.last_seen or now - timedelta(minutes=5)
    first_seen = spec.first_seen or (spec.detected_at or now - timedelta(days=3))
    fields: dict[str, str] = {
        "tenant_id": spec.tenant, "server": spec.server.lower(),
        "first_seen": repr(first_seen.timestamp()), "last_seen": repr(last_seen.timestamp()),
        "evidence_at": repr(last_seen.timestamp()), "status": spec.status, "rule": spec.rule,
        "product": spec.product, "build": spec.build, "build_long": spec.build_long,
        "release_name": spec.release_name, "reason": f"{spec.build} is {spec.status} ({spec.rule})",
        "recommended": orjson.dumps(spec.recommended).decode(),
        "hop": f"from mbx.local (10.0.0.5) by {spec.server} (10.0.0.6) with Microsoft SMTP Server id {spec.build}",
        "last_status": spec.status, "last_rule": spec.rule, "last_status_at": repr(last_seen.timestamp()),
        "connector_type": spec.connector_type, "last_helo": spec.helos[0] if spec.helos else spec.server,
    }
    if spec.detected_at is not None:
        fields["detected_at"] = repr(spec.detected_at.timestamp())
    else:
        fields["current_at"] = repr(last_seen.timestamp())
    if spec.previous_stage is not None:
        fields["stage"] = str(spec.previous_stage)
    state = ServerState.from_hash(spec.key, fields, spec.ips)
    evaluation = evaluate(state, policy, pause or PauseState(), now)
    if evaluation.fingerprint is not None:
        assert evaluation.verdict_prefix is not None and evaluation.verdict_suffix is not None
        verdict = evaluation.verdict_prefix + str(sequence).encode() + evaluation.verdict_suffix
        fields.update({"verdict": verdict.decode(), "fingerprint": evaluation.fingerprint,
                       "stage": str(evaluation.stage), "issued_at": repr(evaluation.at.timestamp()),
                       "sequence": str(sequence)})
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.server(spec.key), mapping=fields)  # type: ignore[arg-type]
    if spec.ips:
        pipe.sadd(keys.server_ips(spec.key), *spec.ips)
    if spec.helos:
        pipe.sadd(keys.server_helos(spec.key), *spec.helos)
    for day, count in spec.messages.items():
        if count:
            pipe.pfadd(keys.server_day_hll(spec.key, day), *[f"{spec.key}-{day}-{n}" for n in range(count)])
    pipe.sadd(keys.tenant_servers(spec.tenant), spec.key)
    pipe.sadd(keys.tenants, spec.tenant)
    await pipe.execute()
    return fields


async def seed_pause(client: aioredis.Redis, keys: KeySchema, tenant: str, state: PauseState) -> None:
    await client.delete(keys.tenant_pause(tenant))
    mapping = pause_state_to_hash(state)
    if mapping:
        await client.hset(keys.tenant_pause(tenant), mapping=mapping)  # type: ignore[arg-type]
    await client.sadd(keys.tenants, tenant)
