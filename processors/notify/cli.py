"""``patchgate notify``: deliver notifications to the tenants' webhooks.

Configuration: ``--config`` or ``PATCHGATE_NOTIFY_CONFIG`` (TOML, see :mod:`processors.notify.config`);
Kafka, Redis, topics and key prefix from the ``PATCHGATE_*`` settings.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from contextlib import suppress
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    notify = subparsers.add_parser("notify", help="deliver notifications to the tenants' webhooks")
    notify.add_argument("--config", type=Path, default=None,
                        help="webhook configuration TOML (default: PATCHGATE_NOTIFY_CONFIG)")
    notify.add_argument("--group", default="patchgate-notify", help="consumer group (default: patchgate-notify)")
    notify.set_defaults(handler=_notify)


def _notify(args: argparse.Namespace) -> int:
    from processors.notify.config import NotifyConfigError, load_notify_config
    from processors.notify.service import NotifyService
    from processors.settings import Settings, SettingsError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = args.config or (Path(os.environ["PATCHGATE_NOTIFY_CONFIG"])
                           if os.environ.get("PATCHGATE_NOTIFY_CONFIG") else None)
    if path is None:
        print("patchgate notify: no webhook configuration (use --config or PATCHGATE_NOTIFY_CONFIG)",
              file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        config = load_notify_config(path)
    except (SettingsError, NotifyConfigError) as error:
        print(f"patchgate notify: {error}", file=sys.stderr)
        return 2
    service = NotifyService(bootstrap=settings.kafka_bootstrap, notifications_topic=settings.topic_notifications,
                            deadletter_topic=settings.topic_deadletter, redis_url=settings.redis_url,
                            key_prefix=settings.key_prefix, config=config, group=args.group)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        stats = await service.run(stop)
        logging.getLogger(__name__).info("stopped: %s", stats.outcomes)
        return 0

    return asyncio.run(main())
