"""The HTTP API against a real Redis and a real broker: auth matrix, pauses, CSV, errors, OpenAPI."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from jsonschema import Draft202012Validator

from processors.contracts import contracts
from processors.devservices import free_port
from processors.enforcement.pauses import PauseState
from processors.enforcement.policy import load_enforcement_policy
from tests.api.helpers import (
    OPERATOR_TOKEN,
    TENANT_A_TOKEN,
    TENANT_B_TOKEN,
    RunningApi,
    create_topic,
    read_topic,
    running_api,
)
from tests.report.seed import SeedServer, seed_pause, seed_server

pytestmark = pytest.mark.integration

POLICY = load_enforcement_policy()
TENANT_ROUTES = ["/v1/tenants/{t}/servers", "/v1/tenants/{t}/pauses", "/v1/tenants/{t}/notifications"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(session: aiohttp.ClientSession, method: str, url: str, token: str | None = None,
               **kwargs: Any) -> tuple[int, str, Any]:
    headers = kwargs.pop("headers", {})
    if token:
        headers.update(bearer(token))
    async with session.request(method, url, headers=headers, **kwargs) as response:
        raw = await response.read()
        ctype = response.headers.get("Content-Type", "")
        body: Any = orjson.loads(raw) if ctype.startswith("application/json") else raw.decode()
        return response.status, ctype, body


async def seed_two_tenants(api: RunningApi, now: datetime) -> None:
    today = now.date().isoformat()
    await seed_server(api.redis, api.keys, POLICY, SeedServer(
        "contoso", "ex01.contoso.com", now - timedelta(days=45), messages={today: 12}), now)
    await seed_server(api.redis, api.keys, POLICY, SeedServer(
        "contoso", "ex02.contoso.com", now - timedelta(days=3)), now)
    await seed_server(api.redis, api.keys, POLICY, SeedServer(
        "fabrikam", "mail.fabrikam.com", now - timedelta(days=70)), now)


@pytest.fixture
def commands_topic(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> str:
    name = unique_name("commands")
    create_topic(kafka_bootstrap, name)
    return name


def test_auth_matrix(redis_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str],
                     commands_topic: str) -> None:
    async def scenario() -> None:
        now = datetime.now(UTC)
        async with running_api(redis_url, kafka_bootstrap, unique_name("pg"), commands_topic) as api, \
                aiohttp.ClientSession() as s:
            await seed_two_tenants(api, now)
            for route in TENANT_ROUTES:
                url = api.base + route.format(t="contoso")
                status, ctype, body = await call(s, "GET", url)
                assert (status, ctype.split(";")[0]) == (401, "application/json"), route
                assert body["error"] == "unauthorized" and "bearer token" in body["message"]
                status, _, body = await call(s, "GET", url, "not-a-valid-token-at-all")
                assert (status, body["error"]) == (401, "unauthorized")
                status, _, body = await call(s, "GET", url, headers={"Authorization": f"Basic {TENANT_A_TOKEN}"})
                assert status == 401
                status, _, body = await call(s, "GET", url, TENANT_B_TOKEN)
                assert (status, body) == (404, {"error": "tenant_not_found", "message": "tenant not found"}), route
                assert (await call(s, "GET", url, TENANT_A_TOKEN))[0] == 200, route
                assert (await call(s, "GET", url, OPERATOR_TOKEN))[0] == 200, route
            # a tenant token cannot change another tenant's pause either
            for method in ("POST", "DELETE"):
                status, _, body = await call(s, method, api.base + "/v1/tenants/contoso/pauses", TENANT_B_TOKEN,
                                             json={"days": 3})
                assert (status, body["error"]) == (404, "tenant_not_found"), method
            # a tenant never sees another tenant's servers
            status, _, body = await call(s, "GET", api.base + "/v1/tenants/fabrikam/servers", TENANT_B_TOKEN)
            assert [row["ServerFQDN"] for row in body["servers"]] == ["mail.fabrikam.com"]
            # operator-only listing
            assert (await call(s, "GET", api.base + "/v1/tenants"))[0] == 401
            status, _, body = await call(s, "GET", api.base + "/v1/tenants", TENANT_A_TOKEN)
            assert (status, body["error"]) == (403, "forbidden")
            assert body["message"] == "this operation needs an operator token"
            status, _, body = await call(s, "GET", api.base + "/v1/tenants", OPERATOR_TOKEN)
            assert status == 200
            tenants = {t["tenant_id"]: t for t in body["tenants"]}
            assert set(tenants) == {"contoso", "fabrikam"}
            assert tenants["contoso"]["servers"] == 2 and tenants["contoso"]["stages"] == {"1": 1, "3": 1}
            assert tenants["fabrikam"]["stages"] == {"6": 1}
            # invalid tenant id: a clear 400, not a crash
            status, _, body = await call(s, "GET", api.base + "/v1/tenants/-bad%20id/servers", OPERATOR_TOKEN)
            assert (status, body["error"]) == (400, "invalid_tenant") and "invalid tenant id" in body["message"]

    asyncio.run(scenario())


def test_servers_json_and_csv(redis_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str],
                              commands_topic: str) -> None:
    async def scenario() -> None:
        now = datetime.now(UTC)
        async with running_api(redis_url, kafka_bootstrap, unique_name("pg"), commands_topic) as api, \
                aiohttp.ClientSession() as s:
            await seed_two_tenants(api, now)
            status, _, body = await call(s, "GET", api.base + "/v1/tenants/contoso/servers", TENANT_A_TOKEN)
            assert status == 200
            rows = {row["ServerFQDN"]: row for row in body["servers"]}
            assert rows["ex01.contoso.com"]["stage"] == 3 and rows["ex02.contoso.com"]["stage"] == 1
            assert rows["ex01.contoso.com"]["messages_per_day"][-1]["messages"] == 12
            assert body["stages"] == {"1": 1, "3": 1}
            assert body["daily"][-1]["messages"] == 12 and body["daily"][-1]["throttled_estimate"] == 2
            assert body["pause"]["days_left_this_year"] == 90
            assert [s_["stage"] for s_ in body["policy"]["stages"]] == list(range(1, 9))

            status, ctype, text = await call(s, "GET", api.base + "/v1/tenants/contoso/servers?format=csv",
                                             TENANT_A_TOKEN)
            assert status == 200 and ctype.startswith("text/csv")
            records = list(csv.DictReader(io.StringIO(text)))
            assert [r["ServerFQDN"] for r in records] == ["ex01.contoso.com", "ex02.contoso.com"]
            assert records[0]["stage"] == "3" and records[0]["NextStageThrottleRate"] == "20"
            assert records[0]["RecommendedBuildVersions"] == "15.1.2507.61 (15.01.2507.061)"
            status, _, body = await call(s, "GET", api.base + "/v1/tenants/contoso/servers?format=xml",
                                         TENANT_A_TOKEN)
            assert (status, body["error"]) == (400, "invalid_format") and "unknown format" in body["message"]

    asyncio.run(scenario())


def test_pause_post_produces_a_command_event(redis_url: str, kafka_bootstrap: str,
                                             unique_name: Callable[[str], str], commands_topic: str) -> None:
    async def scenario() -> dict[str, Any]:
        async with running_api(redis_url, kafka_bootstrap, unique_name("pg"), commands_topic) as api, \
                aiohttp.ClientSession() as s:
            status, _, body = await call(s, "POST", api.base + "/v1/tenants/contoso/pauses", TENANT_A_TOKEN,
                                         json={"days": 14})
            assert status == 202, body
            assert body["status"] == "queued" and body["days"] == 14 and body["days_left_after"] == 76
            return body  # type: ignore[no-any-return]

    accepted = asyncio.run(scenario())
    records = read_topic(kafka_bootstrap, commands_topic, lambda got: len(got) >= 1)
    assert len(records) == 1
    key, value = records[0]
    command = orjson.loads(value or b"")
    contracts.command(command)
    assert key == b"contoso"
    assert command["command_id"] == accepted["command_id"]
    assert (command["tenant_id"], command["action"], command["days"]) == ("contoso", "pause_create", 14)
    assert command["actor"].startswith("api:tenant:contoso:")


def test_pause_quota_and_validation(redis_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str],
                                    commands_topic: str) -> None:
    async def scenario() -> list[str]:
        now = datetime.now(UTC)
        ids = []
        async with running_api(redis_url, kafka_bootstrap, unique_name("pg"), commands_topic) as api, \
                aiohttp.ClientSession() as s:
            url = api.base + "/v1/tenants/contoso/pauses"
            await seed_pause(api.redis, api.keys, "contoso", PauseState(used=((now.year, 85),)))
            status, _, body = await call(s, "POST", url, TENANT_A_TOKEN, json={"days": 10})
            assert status == 409
            assert body["days_left_this_year"] == 5
            assert body["error"] == "quota_exceeded"
            assert body["message"] == (f"Pausing for 10 days would exceed the quota of 90 days in {now.year}: "
                                     "5 days are left this year.")
            for bad, expected in [(b"not json", "must be JSON"), (b"[1]", "JSON object"), (b"{}", "JSON object"),
                                  (b'{"days": 0}', "1 to 90"), (b'{"days": 91}', "1 to 90"),
                                  (b'{"days": "5"}', "1 to 90"), (b'{"days": true}', "1 to 90"),
                                  (b'{"days": 2.5}', "1 to 90"), (b'{"days": 5, "x": 1}', "unknown field")]:
                status, ctype, body = await call(s, "POST", url, TENANT_A_TOKEN, data=bad,
                                                 headers={"Content-Type": "application/json"})
                assert status == 400 and ctype.startswith("application/json"), bad
                assert body["error"] in {"invalid_body", "invalid_days"} and expected in body["message"], (bad, body)
            status, _, body = await call(s, "POST", url, TENANT_A_TOKEN, data=b"x" * 20000)
            assert (status, body["error"]) == (413, "body_too_large") and "too large" in body["message"]
            # no running pause: nothing to end
            status, _, body = await call(s, "DELETE", url, TENANT_A_TOKEN)
            assert (status, body["error"]) == (409, "no_running_pause")
            assert body["message"] == "There is no running pause to end."
            # exactly the days left are fine
            status, _, body = await call(s, "POST", url, TENANT_A_TOKEN, json={"days": 5})
            assert status == 202
            ids.append(body["command_id"])
            # a running pause can be ended early (by the operator too)
            await seed_pause(api.redis, api.keys, "contoso", PauseState(
                until=now + timedelta(days=4), started_at=now - timedelta(days=1), charged_year=now.year,
                used=((now.year, 90),)))
            status, _, body = await call(s, "GET", url, TENANT_A_TOKEN)
            assert body["active"] and body["days_left_this_year"] == 0
            status, _, body = await call(s, "DELETE", url, OPERATOR_TOKEN)
            assert status == 202 and body["action"] == "pause_end"
            ids.append(body["command_id"])
        return ids

    ids = asyncio.run(scenario())
    records = read_topic(kafka_bootstrap, commands_topic, lambda got: len(got) >= 2)
    commands = [orjson.loads(v or b"") for _, v in records]
    # the refused requests produced nothing: only the two accepted commands are on the topic
    assert [c["command_id"] for c in commands] == ids
    assert [c["action"] for c in commands] == ["pause_create", "pause_end"]
    assert commands[1]["actor"].startswith("api:operator:")


def test_notifications_newest_first(redis_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str],
                                    commands_topic: str) -> None:
    async def scenario() -> None:
        async with running_api(redis_url, kafka_bootstrap, unique_name("pg"), commands_topic) as api, \
                aiohttp.ClientSession() as s:
            key = api.keys.tenant_notifications("contoso")
            for n in range(3):  # the worker LPUSHes: the newest is first
                await api.redis.lpush(key, orjson.dumps({"notification_id": f"contoso|n|{n}", "kind": "detected",
                                                         "at": f"2026-11-0{n + 1}T00:00:00Z", "text": f"n{n}"}))
            await api.redis.lpush(key, b"{broken")  # a bad entry is skipped, not a 500
            status, _, body = await call(s, "GET", api.base + "/v1/tenants/contoso/notifications", TENANT_A_TOKEN)
            assert status == 200
            assert [n["text"] for n in body["notifications"]] == ["n2", "n1", "n0"]
            status, _, body = await call(s, "GET", api.base + "/v1/tenants/contoso/notifications?limit=2",
                                         TENANT_A_TOKEN)
            assert [n["text"] for n in body["notifications"]] == ["n2"]  # limit counts raw entries
            status, _, body = await call(s, "GET", api.base + "/v1/tenants/contoso/notifications?limit=0",
                                         TENANT_A_TOKEN)
            assert (status, body["error"]) == (400, "invalid_limit") and "limit" in body["message"]

    asyncio.run(scenario())


def test_unknown_routes_and_redis_outage_answer_json(kafka_bootstrap: str, unique_name: Callable[[str], str],
                                                      commands_topic: str) -> None:
    async def scenario() -> None:
        dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
        async with running_api("redis://unused", kafka_bootstrap, unique_name("pg"), commands_topic,
                               redis_client=dead) as api, aiohttp.ClientSession() as s:
            status, ctype, body = await call(s, "GET", api.base + "/v1/tenants/contoso/servers", TENANT_A_TOKEN)
            assert status == 503 and ctype.startswith("application/json")
            assert body["error"] == "store_unavailable" and "Redis" in body["message"]
            status, _, body = await call(s, "GET", api.base + "/nope", TENANT_A_TOKEN)
            assert (status, body) == (404, {"error": "not_found", "message": "not found"})
            status, _, body = await call(s, "PUT", api.base + "/v1/tenants/contoso/pauses", TENANT_A_TOKEN)
            assert (status, body["error"]) == (405, "method_not_allowed") and "not allowed" in body["message"]
            status, _, body = await call(s, "GET", api.base + "/healthz")
            assert status == 503

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------ OpenAPI


def _check_against_openapi(doc: dict[str, Any], method: str, template: str, status: int, ctype: str,
                           body: Any) -> None:
    operation = doc["paths"][template][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, documented: {sorted(responses)}"
    content = responses[str(status)].get("content", {})
    media = ctype.split(";")[0].strip()
    if media == "text/plain" and "text/plain" not in content:
        media = next(iter(content), media)
    assert media in content, f"{method} {template} {status}: {media} not documented ({sorted(content)})"
    if media == "application/json":
        schema = {**content[media]["schema"], "components": doc["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
        assert not errors, f"{method} {template} {status}: {errors[0].message} at {list(errors[0].absolute_path)}"


def test_openapi_documents_every_route_and_response(redis_url: str, kafka_bootstrap: str,
                                                    unique_name: Callable[[str], str], commands_topic: str) -> None:
    from processors.api.app import routes

    async def scenario() -> None:
        now = datetime.now(UTC)
        async with running_api(redis_url, kafka_bootstrap, unique_name("pg"), commands_topic) as api, \
                aiohttp.ClientSession() as s:
            await seed_two_tenants(api, now)
            await api.redis.lpush(api.keys.tenant_notifications("contoso"), orjson.dumps(
                {"notification_id": "contoso|x|1", "kind": "detected", "at": "2026-11-01T00:00:00Z", "text": "t"}))
            status, _, doc = await call(s, "GET", api.base + "/openapi.json")
            assert status == 200 and doc["openapi"].startswith("3.1")
            Draft202012Validator.check_schema({**doc["components"]["schemas"]["Server"]})
            served = routes(api.app)
            documented = sorted((m.upper(), p) for p, ops in doc["paths"].items() for m in ops
                                if m in {"get", "post", "delete", "put", "patch"})
            assert served == documented

            t = "/v1/tenants/contoso"
            exchanges = [
                ("GET", "/v1/tenants", "/v1/tenants", OPERATOR_TOKEN, None),
                ("GET", "/v1/tenants", "/v1/tenants", TENANT_A_TOKEN, None),
                ("GET", "/v1/tenants", "/v1/tenants", None, None),
                ("GET", "/v1/tenants/{tenant}/servers", t + "/servers", TENANT_A_TOKEN, None),
                ("GET", "/v1/tenants/{tenant}/servers", t + "/servers?format=csv", TENANT_A_TOKEN, None),
                ("GET", "/v1/tenants/{tenant}/servers", t + "/servers?format=x", TENANT_A_TOKEN, None),
                ("GET", "/v1/tenants/{tenant}/servers", t + "/servers", TENANT_B_TOKEN, None),
                ("GET", "/v1/tenants/{tenant}/servers", t + "/servers", None, None),
                ("GET", "/v1/tenants/{tenant}/pauses", t + "/pauses", TENANT_A_TOKEN, None),
                ("POST", "/v1/tenants/{tenant}/pauses", t + "/pauses", TENANT_A_TOKEN, {"days": 3}),
                ("POST", "/v1/tenants/{tenant}/pauses", t + "/pauses", TENANT_A_TOKEN, {"days": 0}),
                ("POST", "/v1/tenants/{tenant}/pauses", t + "/pauses", TENANT_A_TOKEN, {"days": 90}),
                ("DELETE", "/v1/tenants/{tenant}/pauses", t + "/pauses", TENANT_A_TOKEN, None),
                ("GET", "/v1/tenants/{tenant}/notifications", t + "/notifications", TENANT_A_TOKEN, None),
                ("GET", "/openapi.json", "/openapi.json", None, None),
                ("GET", "/healthz", "/healthz", None, None),
                ("GET", "/metrics", "/metrics", None, None),
                ("GET", "/", "/", None, None),
                ("GET", "/tenants/{tenant}", "/tenants/contoso", None, None),
                ("GET", "/static/{name}", "/static/report.js", None, None),
                ("GET", "/static/{name}", "/static/report.css", None, None),
                ("GET", "/static/{name}", "/static/secret.txt", None, None),
            ]
            await seed_pause(api.redis, api.keys, "contoso", PauseState(used=((now.year, 5),)))
            seen: dict[tuple[str, str], set[int]] = {}
            for method, template, path, token, payload in exchanges:
                status, ctype, body = await call(s, method, api.base + path, token,
                                                 **({"json": payload} if payload is not None else {}))
                _check_against_openapi(doc, method, template, status, ctype, body)
                seen.setdefault((method, template), set()).add(status)
            # every served route was exercised, with its main success status
            assert {k for k in seen} == set(documented)
            assert 200 in seen[("GET", "/v1/tenants/{tenant}/servers")] and 202 in seen[
                ("POST", "/v1/tenants/{tenant}/pauses")]
            assert 409 in seen[("POST", "/v1/tenants/{tenant}/pauses")]

    asyncio.run(scenario())


def test_page_and_metrics_endpoints(redis_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str],
                                    commands_topic: str) -> None:
    async def scenario() -> None:
        async with running_api(redis_url, kafka_bootstrap, unique_name("pg"), commands_topic) as api, \
                aiohttp.ClientSession() as s:
            async with s.get(api.base + "/tenants/contoso") as response:
                html = await response.text()
                assert response.status == 200
                csp = response.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "default-src 'none'" in csp
                assert response.headers["Referrer-Policy"] == "no-referrer"
            assert '<table id="servers">' in html and "/static/report.js" in html
            assert "http://" not in html and "https://" not in html  # no external resources
            status, _, body = await call(s, "GET", api.base + "/tenants/bad%20tenant")
            assert status == 400 and body == {"error": "invalid_tenant", "message": "invalid tenant id"}
            await call(s, "GET", api.base + "/v1/tenants/contoso/pauses", TENANT_A_TOKEN)
            status, _, text = await call(s, "GET", api.base + "/metrics")
            assert status == 200
            assert ('patchgate_api_requests_total{method="GET",route="/v1/tenants/{tenant}/pauses",status="200"}'
                    in text)

    asyncio.run(scenario())
