"""The HTTP API and the report page (aiohttp).

Routes (documented in ``openapi.json``, served at ``/openapi.json``):

- ``GET  /v1/tenants`` (operator token): every tenant with its server count per stage and pause.
- ``GET  /v1/tenants/{tenant}/servers[?format=csv]``: the report rows (one per server) plus chart data.
- ``GET  /v1/tenants/{tenant}/pauses``: pause state and the days left this year.
- ``POST /v1/tenants/{tenant}/pauses`` ``{"days": N}``: create or extend a pause. Checked against the
  quota in Redis (409 with the days left when it would be exceeded), then sent as a command event to
  the commands topic; the workers apply it (202 with the command id). The workers check the quota
  again when they apply the command, so two racing requests cannot exceed it.
- ``DELETE /v1/tenants/{tenant}/pauses``: end the running pause early (command event, 202).
- ``GET  /v1/tenants/{tenant}/notifications[?limit=N]``: recent notifications, newest first.
- ``GET  /`` and ``GET /tenants/{tenant}``: the report page (static HTML + JS; data via the API).
- ``GET  /openapi.json``, ``GET /healthz``, ``GET /metrics``, ``GET /static/{name}``.

Every error is JSON ``{"error": "<stable code>", "message": "..."}`` (see :mod:`processors.api.errors`),
aiohttp's own errors included; no client input gets a 5xx. No token or an unknown one: 401. A tenant
token used on another tenant: 404, the same answer as for a tenant that does not exist, so tokens
cannot probe for tenant ids. Tenant tokens on operator routes: 403. Connection limits and timeouts:
:mod:`processors.api.server`.

The policy (stage table, pause quota, shadow mode) is the policy file's version in force: a task of
the app re-reads the file when it changes (every ``check_interval`` of its
:class:`processors.policyfile.PolicyFileSource`, off the event loop) and swaps in a new version only if
it validates. A request reads the version once (:attr:`ApiContext.reader`), so one answer never mixes two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from processors import metrics
from processors.api.auth import TENANT, Principal, TokenStore
from processors.api.errors import ApiError, json_error, status_code
from processors.api.server import DEFAULT_READ_TIMEOUT_S
from processors.contracts import ContractError
from processors.enforcement.policy import EnforcementPolicy
from processors.enforcement.verdicts import rfc3339
from processors.events.command import Command, pause_command
from processors.kafka.clients import RefusalWatch
from processors.kafka.commands import CommandPublisher, CommandSendFailed
from processors.kafka.config import KafkaConfig
from processors.kafka.logs import kafka_logger
from processors.policyfile import PolicyFileSource
from processors.report.model import ESTIMATE_NOTE, daily_totals, stage_counts
from processors.report.reader import ReportReader
from processors.report.render import to_csv
from processors.state.errors import StoreUnavailable
from processors.state.keys import NOTIFICATIONS_KEPT
from processors.state.protocol import Store

log = logging.getLogger(__name__)

STATIC_FILES = {
    "report.js": "application/javascript; charset=utf-8",
    "report.css": "text/css; charset=utf-8",
}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
MAX_BODY = 16 * 1024


class CommandSink(Protocol):
    async def send(self, tenant: str, command: Command) -> None: ...


def kafka_command_sink(kafka: KafkaConfig, topic: str, timeout: float = 10.0,
                       on_refused: Callable[[], object] | None = None) -> tuple[CommandPublisher, RefusalWatch]:
    """The API's command publisher: librdkafka's log with repeats summarised (no broker: 2 lines a
    second), polled by the CLI; the watch says when the brokers refuse its credentials."""
    logger = kafka_logger("patchgate.api.kafka")
    watch = RefusalWatch(kafka, logger, on_refused)
    return CommandPublisher(kafka, topic, timeout, logger=logger, error_cb=watch), watch


@dataclass
class ApiContext:
    store: Store
    policies: PolicyFileSource
    tokens: TokenStore
    commands: CommandSink
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S  # longest time to receive a request body
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def reader(self) -> ReportReader:
        """A reader under the policy in force now: a request takes one and uses its ``policy`` throughout."""
        return ReportReader(self.store, self.policies.current.enforcement)


CONTEXT = web.AppKey("patchgate_context", ApiContext)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _http_error(request: web.Request, error: web.HTTPException) -> web.Response:
    """aiohttp's own error (unknown route, wrong method, body too large, ...) as a JSON error."""
    text = {404: "not found", 405: f"method {request.method} not allowed here",
            413: f"request body too large (at most {MAX_BODY} bytes)"}.get(error.status, error.reason)
    response = json_error(error.status, status_code(error.status, error.reason), text)
    if error.status == 405 and "Allow" in error.headers:
        response.headers["Allow"] = error.headers["Allow"]
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return json_error(error.status, error.code, error.message, **error.extra)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _http_error(request, error)
    except StoreUnavailable as error:
        log.error("Redis failed while serving %s %s: %s", request.method, request.path, error)
        return json_error(503, "store_unavailable", "the state store (Redis) is unavailable; try again shortly")
    except CommandSendFailed as error:
        log.error("command not delivered to the broker: %s", error)
        return json_error(503, "broker_unavailable",
                          "the command could not be queued (broker unavailable); nothing was changed")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return json_error(500, "internal_error", "internal error")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as JSON with a stable code; security headers; the request counter."""
    response = await _answer(request, handler)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    metrics.API_REQUESTS.labels(route, request.method, str(response.status)).inc()
    return response


# ------------------------------------------------------------------------------------- helpers


def _ctx(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def _principal(request: web.Request) -> Principal:
    principal = _ctx(request).tokens.authenticate(request.headers.get("Authorization"))
    if principal is None:
        raise ApiError(401, "unauthorized", "missing or invalid bearer token (send 'Authorization: Bearer <token>')")
    return principal


def _tenant(request: web.Request) -> tuple[str, Principal]:
    """Authenticate, validate the tenant id and check the token may see it (else 404)."""
    principal = _principal(request)
    tenant = request.match_info["tenant"]
    if not TENANT.match(tenant):
        raise ApiError(400, "invalid_tenant",
                       "invalid tenant id: 1-64 characters A-Z a-z 0-9 . _ -, starting with a letter or digit")
    if not principal.may_access(tenant):
        raise ApiError(404, "tenant_not_found", "tenant not found")
    return tenant, principal


def _operator(request: web.Request) -> Principal:
    principal = _principal(request)
    if not principal.operator:
        raise ApiError(403, "forbidden", "this operation needs an operator token")
    return principal


def _policy_json(policy: EnforcementPolicy) -> dict[str, Any]:
    return {
        "stages": [{"stage": s.number, "start_day": s.start_day, "throttle_minutes": s.throttle_minutes,
                    "block_minutes": s.block_minutes} for s in policy.stages],
        "pause_days_per_year": policy.pauses.days_per_year,
        "pause_max_days_per_request": policy.pauses.max_days_per_request,
    }


# ------------------------------------------------------------------------------------ handlers


async def list_tenants(request: web.Request) -> web.Response:
    _operator(request)
    ctx = _ctx(request)
    now = ctx.now()
    reader = ctx.reader
    summaries = await reader.summaries(now)
    return _json({"generated_at": rfc3339(now), "tenants": [s.to_json() for s in summaries],
                  "policy": _policy_json(reader.policy)})


async def servers(request: web.Request) -> web.Response:
    tenant, _ = _tenant(request)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError(400, "invalid_format", f"unknown format {fmt[:40]!r}: use json or csv")
    ctx = _ctx(request)
    now = ctx.now()
    reader = ctx.reader
    rows = await reader.rows(tenant, now)
    if fmt == "csv":
        return web.Response(text=to_csv(rows), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="patchgate-{tenant}.csv"'})
    pause = await reader.pause(tenant, now)
    return _json({
        "tenant_id": tenant,
        "generated_at": rfc3339(now),
        "servers": [row.to_json() for row in rows],
        "stages": stage_counts(rows),
        "daily": daily_totals(rows, reader.policy, pause),
        "estimate_note": ESTIMATE_NOTE,
        "pause": pause.to_json(),
        "policy": _policy_json(reader.policy),
        "shadow": reader.policy.shadow.applies_to(tenant),
    })


async def get_pauses(request: web.Request) -> web.Response:
    tenant, _ = _tenant(request)
    ctx = _ctx(request)
    return _json((await ctx.reader.pause(tenant, ctx.now())).to_json())


def parse_limit(raw: str, maximum: int) -> int:
    """A ``limit`` query value: ASCII digits only (``str.isdigit`` also accepts e.g. '²'), bounded length."""
    if not 1 <= len(raw) <= len(str(maximum)) or not raw.isascii() or not raw.isdigit() \
            or not 1 <= int(raw) <= maximum:
        raise ApiError(400, "invalid_limit", f"limit must be a whole number from 1 to {maximum}")
    return int(raw)


async def _read_body(request: web.Request) -> bytes:
    """The request body, read within the read timeout (a client trickling it gets a 408)."""
    timeout = _ctx(request).read_timeout_s
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise ApiError(408, "request_timeout", f"the request body was not received within {timeout:g}s") from None
    except (RequestPayloadError, ConnectionResetError) as error:
        raise ApiError(400, "bad_request", f"the request body could not be read: {type(error).__name__}") from None


async def _read_days(request: web.Request, maximum: int) -> int:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "body_too_large", f"request body too large (at most {MAX_BODY} bytes)")
    raw = await _read_body(request)
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_body", 'the body must be JSON like {"days": 10}') from None
    if not isinstance(body, dict) or "days" not in body:
        raise ApiError(400, "invalid_body", 'the body must be a JSON object with "days", like {"days": 10}')
    unknown = sorted(set(body) - {"days"})
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown field {unknown[0]!r}: only \"days\" is accepted")
    days = body["days"]
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= maximum:
        raise ApiError(400, "invalid_days", f"days must be a whole number from 1 to {maximum}, got {days!r}")
    return days


async def post_pause(request: web.Request) -> web.Response:
    tenant, principal = _tenant(request)
    ctx = _ctx(request)
    reader = ctx.reader
    days = await _read_days(request, reader.policy.pauses.max_days_per_request)
    now = ctx.now()
    pause = await reader.pause(tenant, now)
    if days > pause.days_left_this_year:
        raise ApiError(
            409, "quota_exceeded",
            f"Pausing for {days} days would exceed the quota of {pause.days_per_year} days in {pause.year}: "
            f"{pause.days_left_this_year} days are left this year.",
            days_left_this_year=pause.days_left_this_year,
        )
    try:
        command = pause_command(tenant_id=tenant, action="pause_create", actor=principal.actor, issued_at=now,
                                days=days)
    except ContractError as error:
        raise ApiError(400, "invalid_body", f"invalid pause request: {error}") from None
    await ctx.commands.send(tenant, command)
    log.info("pause command %s for %s (%d days) by %s", command["command_id"], tenant, days, principal.actor,
             extra={"tenant": tenant})
    return _json({"command_id": command["command_id"], "tenant_id": tenant, "action": command["action"],
                  "days": days, "status": "queued", "extends": pause.active,
                  "days_left_after": pause.days_left_this_year - days}, 202)


async def delete_pause(request: web.Request) -> web.Response:
    tenant, principal = _tenant(request)
    ctx = _ctx(request)
    now = ctx.now()
    pause = await ctx.reader.pause(tenant, now)
    if not pause.active:
            raise ApiError(409, "no_running_pause", "There is no running pause to end.",
                       days_left_this_year=pause.days_left_this_year)
    command = pause_command(tenant_id=tenant, action="pause_end", actor=principal.actor, issued_at=now)
    await ctx.commands.send(tenant, command)
    log.info("pause end command %s for %s by %s", command["command_id"], tenant, principal.actor,
             extra={"tenant": tenant})
    return _json({"command_id": command["command_id"], "tenant_id": tenant, "action": command["action"],
                  "status": "queued"}, 202)


async def notifications(request: web.Request) -> web.Response:
    tenant, _ = _tenant(request)
    limit = parse_limit(request.query.get("limit", "100"), NOTIFICATIONS_KEPT)
    items = await _ctx(request).reader.notifications(tenant, limit)
    return _json({"tenant_id": tenant, "notifications": items})


async def health(request: web.Request) -> web.Response:
    await _ctx(request).store.ping()
    return _json({"status": "ok"})


async def metrics_endpoint(request: web.Request) -> web.Response:
    body, content_type = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


def _resource(name: str) -> bytes:
    return resources.files("processors.api").joinpath(name).read_bytes()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_resource("openapi.json"), content_type="application/json")


async def page(request: web.Request) -> web.Response:
    tenant = request.match_info.get("tenant")
    if tenant is not None and not TENANT.match(tenant):
        raise ApiError(400, "invalid_tenant", "invalid tenant id")
    return web.Response(body=_resource("static/report.html"), content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": PAGE_CSP})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise ApiError(404, "not_found", "not found")
    return web.Response(body=_resource(f"static/{name}"), headers={"Content-Type": STATIC_FILES[name],
                                                                   "Cache-Control": "no-cache"})


async def _reload_policy_while_serving(app: web.Application) -> AsyncIterator[None]:
    """From the app's start to its cleanup: the policy file is checked every ``check_interval``
    (the packaged one, which cannot change, is not)."""
    policies = app[CONTEXT].policies
    task = asyncio.create_task(keep_policy_current(policies)) if policies.path is not None else None
    yield
    if task is not None:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def keep_policy_current(policies: PolicyFileSource) -> None:
    """Look at the policy file every check interval, reading and parsing a changed one in a thread."""
    while True:
        await asyncio.sleep(policies.check_interval)
        try:
            await asyncio.to_thread(policies.reload_if_changed)
        except Exception as error:  # reload_if_changed reports bad files itself: this only keeps the task alive
            log.error("the policy file check failed, keeping the policy in force: %s: %s", type(error).__name__, error)


def create_app(ctx: ApiContext) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_BODY)
    app[CONTEXT] = ctx
    app.cleanup_ctx.append(_reload_policy_while_serving)
    r = app.router
    r.add_get("/v1/tenants", list_tenants, allow_head=False)
    r.add_get("/v1/tenants/{tenant}/servers", servers, allow_head=False)
    r.add_get("/v1/tenants/{tenant}/pauses", get_pauses, allow_head=False)
    r.add_post("/v1/tenants/{tenant}/pauses", post_pause)
    r.add_delete("/v1/tenants/{tenant}/pauses", delete_pause)
    r.add_get("/v1/tenants/{tenant}/notifications", notifications, allow_head=False)
    r.add_get("/openapi.json", openapi, allow_head=False)
    r.add_get("/healthz", health, allow_head=False)
    r.add_get("/metrics", metrics_endpoint, allow_head=False)
    r.add_get("/", page, allow_head=False)
    r.add_get("/tenants/{tenant}", page, allow_head=False)
    r.add_get("/static/{name}", static, allow_head=False)
    return app


class AccessLogger(AbstractAccessLogger):
    """Access log without query strings: the report page may be opened with ``?token=...`` once."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %d %.1fms", request.remote, request.method, request.path, response.status,
                         time * 1000)


def routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route, for the OpenAPI check."""
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        if path:
            out.append((route.method, str(path)))
    return sorted(out)
