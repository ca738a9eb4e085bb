"""``patchgate api``: serve the HTTP API and the report page.

Environment (besides the ``PATCHGATE_*`` settings of :mod:`processors.settings`):

=============================  ===========  =====================================================
Variable                       Default      Meaning
=============================  ===========  =====================================================
PATCHGATE_API_PORT             8080         TCP port
PATCHGATE_API_BIND             127.0.0.1    address to bind (put a TLS proxy in front when public)
PATCHGATE_API_TOKENS_FILE      (none)       TOML/JSON file of token = tenant id or "*" (operator)
PATCHGATE_API_TOKENS           (none)       the same inline: ``token=tenant,token2=*``
PATCHGATE_API_READ_TIMEOUT     10           seconds to receive a request's line and headers (from
                                            the connection's start or the previous answer: also the
                                            keep-alive idle limit) and, separately, its body
PATCHGATE_API_MAX_CONNECTIONS  512          connections open at once; more are closed at once
=============================  ===========  =====================================================

Connections that miss the header deadline are closed (see :mod:`processors.api.server`); a body
that misses it gets a 408.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily: `patchgate classify` must not pay for aiohttp, Redis and Kafka
    from processors.api.auth import TokenStore
    from processors.enforcement.policy import EnforcementPolicy
    from processors.settings import Settings

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = subparsers.add_parser("api", help="serve the HTTP API and the report page")
    api.add_argument("--port", type=int, default=None, help="TCP port (default: PATCHGATE_API_PORT or 8080)")
    api.add_argument("--bind", default=None, help="address (default: PATCHGATE_API_BIND or 127.0.0.1)")
    api.add_argument("--read-timeout", type=float, default=None, metavar="SECONDS",
                     help="seconds to receive a request's headers, and its body (default: "
                          "PATCHGATE_API_READ_TIMEOUT or 10)")
    api.add_argument("--max-connections", type=int, default=None, metavar="N",
                     help="connections open at once (default: PATCHGATE_API_MAX_CONNECTIONS or 512)")
    api.set_defaults(handler=_api)


def _api(args: argparse.Namespace) -> int:
    from processors.api.auth import TokenConfigError, TokenStore
    from processors.enforcement.policy import PolicyError, load_enforcement_policy
    from processors.settings import Settings, SettingsError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        tokens = TokenStore.from_env()
        policy = load_enforcement_policy(settings.policy_file)
        port = args.port if args.port is not None else _port(os.environ.get("PATCHGATE_API_PORT"))
        bind = args.bind or os.environ.get("PATCHGATE_API_BIND") or "127.0.0.1"
        read_timeout = _read_timeout(args.read_timeout)
        max_connections = _max_connections(args.max_connections)
    except (SettingsError, TokenConfigError, PolicyError) as error:
        print(f"patchgate api: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"patchgate api: {error}", file=sys.stderr)
        return 2
    if not 0 <= port <= 65535:
        print("patchgate api: the port must be 0..65535", file=sys.stderr)
        return 2
    if not len(tokens):
        print("patchgate api: no API tokens configured (set PATCHGATE_API_TOKENS_FILE or PATCHGATE_API_TOKENS)",
              file=sys.stderr)
        return 2
    return asyncio.run(_serve(settings, tokens, policy, bind, port, read_timeout, max_connections))


def _port(raw: str | None) -> int:
    try:
        return int(raw or 8080)
    except ValueError:
        raise ValueError("PATCHGATE_API_PORT must be a number") from None


def _read_timeout(option: float | None) -> float:
    raw = os.environ.get("PATCHGATE_API_READ_TIMEOUT")
    try:
        value = option if option is not None else float(raw) if raw else 10.0
    except ValueError:
        raise ValueError(f"PATCHGATE_API_READ_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not 0.1 <= value <= 3600:
        raise ValueError(f"the read timeout must be 0.1..3600 seconds, got {value:g}")
    return value


def _max_connections(option: int | None) -> int:
    raw = os.environ.get("PATCHGATE_API_MAX_CONNECTIONS")
    try:
        value = option if option is not None else int(raw) if raw else 512
    except ValueError:
        raise ValueError(f"PATCHGATE_API_MAX_CONNECTIONS must be a whole number, got {raw!r}") from None
    if not 1 <= value <= 100_000:
        raise ValueError(f"the connection limit must be 1..100000, got {value}")
    return value


async def _serve(settings: Settings, tokens: TokenStore, policy: EnforcementPolicy, bind: str, port: int,
                 read_timeout: float, max_connections: int) -> int:
    from aiohttp import web

    from processors.api.app import AccessLogger, ApiContext, KafkaCommandSink, create_app
    from processors.api.server import GuardedAppRunner
    from processors.kafka_log import poll_kafka_events
    from processors.state.keys import KeySchema
    from processors.state.store import StateStore

    store = StateStore.from_url(settings.redis_url, KeySchema(settings.key_prefix))
    sink = KafkaCommandSink(settings.kafka_bootstrap, settings.topic_commands)
    ctx = ApiContext(store=store, policy=policy, tokens=tokens, commands=sink, read_timeout_s=read_timeout)
    runner = GuardedAppRunner(create_app(ctx), read_timeout_s=read_timeout, max_connections=max_connections,
                              access_log=logging.getLogger("patchgate.api.access"), access_log_class=AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, bind, port)
    await site.start()
    log.info("patchgate api listening on http://%s:%d/", bind, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    broker_events = asyncio.create_task(poll_kafka_events(sink.output.producer, stop))
    try:
        await stop.wait()
    finally:
        stop.set()
        await broker_events
        await runner.cleanup()
        await store.close()
        sink.close()
    return 0
