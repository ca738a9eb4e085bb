"""``patchgate api``: serve the HTTP API and the report page.

Settings: :class:`processors.api.settings.ApiSettings` (``PATCHGATE_API_*``; the command-line options
win) besides the shared ``PATCHGATE_*`` settings of :mod:`processors.settings`. Connections that miss
the header deadline are closed (see :mod:`processors.api.server`); a body that misses it gets a 408.
``/livez``, ``/readyz`` (Redis and the brokers reachable) and ``/metrics`` on
``PATCHGATE_API_PROBE_BIND:PATCHGATE_API_PROBE_PORT`` (:mod:`processors.probes`). The policy file is
checked at start (a bad one: exit 2) and then every ``PATCHGATE_API_POLICY_CHECK_INTERVAL`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily: `patchgate classify` must not pay for aiohttp, Redis and Kafka
    from processors.api.auth import TokenStore
    from processors.api.settings import ApiSettings
    from processors.policyfile import PolicyFileSource
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
    from processors.api.settings import ApiSettings
    from processors.classify import PolicyError
    from processors.logsetup import LogFormatError, setup_logging
    from processors.policyfile import PolicyFileSource
    from processors.settings import Settings, SettingsError

    try:
        setup_logging("api")
        settings = Settings.from_env()
        api = ApiSettings.from_env(api_port=args.port, api_bind=args.bind, api_read_timeout=args.read_timeout,
                                   api_max_connections=args.max_connections)
        tokens = TokenStore.from_env()
        policies = PolicyFileSource.at_start(settings.policy_file, api.api_policy_check_interval)
    except (SettingsError, TokenConfigError, PolicyError, LogFormatError) as error:
        print(f"patchgate api: {error}", file=sys.stderr)
        return 2
    if not len(tokens):
        print("patchgate api: no API tokens configured (set PATCHGATE_API_TOKENS_FILE or PATCHGATE_API_TOKENS)",
              file=sys.stderr)
        return 2
    return asyncio.run(_serve(settings, tokens, policies, api))


async def _serve(settings: Settings, tokens: TokenStore, policies: PolicyFileSource, api: ApiSettings) -> int:
    from aiohttp import web

    from processors.api.app import AccessLogger, ApiContext, create_app, kafka_command_sink
    from processors.api.server import GuardedAppRunner
    from processors.kafka.logs import poll_kafka_events
    from processors.probes import Probes, kafka_check, redis_check
    from processors.state.keys import KeySchema
    from processors.state.store import StateStore

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    store = StateStore.from_url(settings.redis_url, KeySchema(settings.key_prefix))
    # brokers that are away do not stop the API (reads work); brokers that refuse its credentials do
    sink, watch = kafka_command_sink(settings.kafka, settings.topic_commands,
                                     on_refused=lambda: loop.call_soon_threadsafe(stop.set))
    ctx = ApiContext(store=store, policies=policies, tokens=tokens, commands=sink, read_timeout_s=api.api_read_timeout)
    runner = GuardedAppRunner(create_app(ctx), read_timeout_s=api.api_read_timeout,
                              max_connections=api.api_max_connections,
                              access_log=logging.getLogger("patchgate.api.access"), access_log_class=AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, api.api_bind, api.api_port)
    await site.start()
    log.info("patchgate api listening on http://%s:%d/", api.api_bind, api.api_port)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    broker_events = asyncio.create_task(poll_kafka_events(sink.output.producer, stop))
    probes = Probes(api.api_probe_bind, api.api_probe_port).start()
    probes.spawn(stop)
    probes.watch("redis", redis_check(store), stop)
    probes.watch("kafka", kafka_check(sink.output.producer), stop)
    try:
        await stop.wait()
    finally:
        stop.set()
        await broker_events
        await probes.aclose()
        await runner.cleanup()
        await store.close()
        sink.close()
    if watch.reason is not None:
        print(f"patchgate api: {watch.message()}", file=sys.stderr)
        return 2
    return 0
