"""``patchgate worker``, ``patchgate pause`` and ``patchgate pauses``.

``pause`` does not touch Redis: it produces a command event on the commands topic, so every change
is auditable and applied by the workers in order. ``pauses`` reads the tenant's pause state.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime

import orjson

from processors.contracts import ContractError
from processors.enforcement.verdicts import rfc3339
from processors.settings import Settings, component_settings

TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would accept a final newline
PAUSE_TIMEOUT_S = 10.0  # the brokers' answer to the pause CLI (as publish_pause's acknowledgement)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = subparsers.add_parser("worker", help="run the stream processor (a Faust worker)")
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    worker.set_defaults(handler=_worker)

    pause = subparsers.add_parser("pause", help="pause a tenant's enforcement (or extend / end the pause)")
    pause.add_argument("--tenant", required=True)
    group = pause.add_mutually_exclusive_group(required=True)
    group.add_argument("--days", type=int, help="create or extend the pause by this many days")
    group.add_argument("--end", action="store_true", help="end the running pause early")
    pause.add_argument("--actor", default="cli", help="who asks (recorded in the command event)")
    pause.set_defaults(handler=_pause)

    pauses = subparsers.add_parser("pauses", help="show a tenant's pause and the days left this year")
    pauses.add_argument("--tenant", required=True)
    pauses.set_defaults(handler=_pauses)


def _settings() -> Settings:
    return component_settings(Settings, "patchgate")


def _worker(args: argparse.Namespace) -> int:
    from processors.classify import PolicyError
    from processors.kafka.clients import KafkaUnreachable
    from processors.kafka.config import KafkaConfigError
    from processors.kafka.topics import TopicsContradict, TopicsNotCreated
    from processors.logsetup import LogFormatError, setup_logging
    from processors.worker.app import run_worker

    try:
        setup_logging("worker", args.loglevel)
        return run_worker(_settings(), args.loglevel)
    except TopicsContradict as error:
        print("\n".join(f"patchgate worker: {line}" for line in error.contradictions), file=sys.stderr)
        return 2
    except (KafkaConfigError, KafkaUnreachable, LogFormatError, TopicsNotCreated) as error:  # configuration
        print(f"patchgate worker: {error}", file=sys.stderr)
        return 2
    except PolicyError as error:  # the policy file: invalid or unreadable, named with the key
        print(f"patchgate worker: policy file {error}", file=sys.stderr)
        return 2


def _pause(args: argparse.Namespace) -> int:
    from processors.kafka.clients import KafkaRefused, KafkaUnreachable, check_connection
    from processors.kafka.commands import CommandSendFailed, publish_pause
    from processors.kafka.config import KafkaConfigError
    from processors.kafka.oidc import OidcTokenError

    settings = _settings()
    try:  # credentials the brokers (or the token endpoint) refuse: exit 2 at once, not a send timeout
        check_connection(settings.kafka, PAUSE_TIMEOUT_S)
    except (KafkaRefused, OidcTokenError) as error:
        print(f"patchgate pause: {error}", file=sys.stderr)
        return 2
    except KafkaUnreachable as error:
        print(f"patchgate pause: {error}", file=sys.stderr)
        return 1
    try:
        command = publish_pause(settings.kafka, settings.topic_commands, args.tenant, args.days, args.end,
                                args.actor)
    except ContractError as error:
        print(f"patchgate pause: invalid request: {error}", file=sys.stderr)
        return 2
    except (KafkaConfigError, CommandSendFailed) as error:
        print(f"patchgate pause: {error}", file=sys.stderr)
        return 1
    print(f"pause command {command['command_id']} sent for tenant {args.tenant}")
    return 0


def _pauses(args: argparse.Namespace) -> int:
    if not TENANT.match(args.tenant):
        print(f"patchgate pauses: invalid tenant id {args.tenant!r}", file=sys.stderr)
        return 2
    settings = _settings()
    return asyncio.run(_show_pauses(settings, args.tenant))


async def _show_pauses(settings: Settings, tenant: str) -> int:
    from processors.enforcement.policy import load_enforcement_policy
    from processors.state.keys import KeySchema
    from processors.state.store import StateStore

    store = StateStore.from_url(settings.redis_url, KeySchema(settings.key_prefix))
    try:
        state = (await store.pause_states([tenant]))[tenant]
    finally:
        await store.close()
    quota = load_enforcement_policy(settings.policy_file).pauses.days_per_year
    now = datetime.now(UTC)
    print(orjson.dumps({
        "tenant_id": tenant,
        "paused_until": rfc3339(state.until) if state.active_at(now) else None,
        "used_days": dict((str(year), days) for year, days in state.used),
        "days_left_this_year": quota - state.used_in(now.year),
    }, option=orjson.OPT_INDENT_2).decode())
    return 0
