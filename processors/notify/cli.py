"""``patchgate notify``: deliver notifications to the tenants' webhooks.

Settings: :class:`processors.notify.settings.NotifySettings` (``--config`` / ``PATCHGATE_NOTIFY_CONFIG``,
the webhook TOML of :mod:`processors.notify.config`; ``--group`` / ``PATCHGATE_NOTIFY_GROUP``); Kafka,
Redis, topics and key prefix from the shared ``PATCHGATE_*`` settings. ``/livez``, ``/readyz`` (Redis and the
brokers reachable) and ``/metrics`` on ``PATCHGATE_NOTIFY_PROBE_BIND:PATCHGATE_NOTIFY_PROBE_PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from contextlib import suppress
from pathlib import Path

from processors.logsetup import LogFormatError, setup_logging


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    notify = subparsers.add_parser("notify", help="deliver notifications to the tenants' webhooks")
    notify.add_argument("--config", type=Path, default=None,
                        help="webhook configuration TOML (default: PATCHGATE_NOTIFY_CONFIG)")
    notify.add_argument("--group", default=None,
                        help="consumer group (default: PATCHGATE_NOTIFY_GROUP or patchgate-notify)")
    notify.set_defaults(handler=_notify)


def _notify(args: argparse.Namespace) -> int:
    from processors.notify.config import NotifyConfigError, load_notify_config
    from processors.notify.service import NotifyService
    from processors.notify.settings import NotifySettings
    from processors.probes import Probes
    from processors.settings import Settings, SettingsError

    try:
        setup_logging("notify")
        settings = Settings.from_env()
        own = NotifySettings.from_env(notify_config=args.config, notify_group=args.group)
        config = load_notify_config(own.webhook_config)
    except (SettingsError, NotifyConfigError, LogFormatError) as error:
        print(f"patchgate notify: {error}", file=sys.stderr)
        return 2
    service = NotifyService(kafka=settings.kafka, notifications_topic=settings.topic_notifications,
                            deadletter_topic=settings.topic_deadletter, redis_url=settings.redis_url,
                            key_prefix=settings.key_prefix, config=config, group=own.notify_group)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        probes = Probes(own.notify_probe_bind, own.notify_probe_port).start()
        probes.spawn(stop)
        try:
            stats = await service.run(stop, probes)
        finally:
            await probes.aclose()
        logging.getLogger(__name__).info("stopped: %s", stats.outcomes)
        if service.refusal.reason is not None:  # credentials or TLS that can never work: no retry loop
            print(f"patchgate notify: {service.refusal.message()}", file=sys.stderr)
            return 2
        return 0

    return asyncio.run(main())
