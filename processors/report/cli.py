"""``patchgate report --tenant T [--json|--csv]``: the tenant's server report from Redis."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would accept a final newline


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = subparsers.add_parser("report", help="print a tenant's server report (stages, dates, replies)")
    report.add_argument("--tenant", required=True)
    fmt = report.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON (every field)")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    report.add_argument("--colour", choices=["auto", "always", "never"], default="auto",
                        help="colour the stage column (auto: when stdout is a terminal)")
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from processors.enforcement.policy import PolicyError
    from processors.settings import Settings, SettingsError

    if not TENANT.match(args.tenant):
        print(f"patchgate report: invalid tenant id {args.tenant!r}", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"patchgate: {error}", file=sys.stderr)
        return 2
    colour = args.colour == "always" or (args.colour == "auto" and sys.stdout.isatty())
    fmt = "json" if args.json else "csv" if args.csv else "table"
    try:
        text = asyncio.run(render_report(settings.redis_url, settings.key_prefix, settings.policy_file,
                                         args.tenant, fmt, colour))
    except PolicyError as error:
        print(f"patchgate report: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"patchgate report: cannot read Redis: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


async def render_report(redis_url: str, key_prefix: str, policy_file: Path | None, tenant: str, fmt: str,
                        colour: bool = False, now: datetime | None = None) -> str:
    from processors.enforcement.policy import load_enforcement_policy
    from processors.report.reader import ReportReader
    from processors.report.render import pause_line, to_csv, to_json, to_table
    from processors.state.errors import StoreUnavailable
    from processors.state.keys import KeySchema
    from processors.state.store import StateStore

    now = now or datetime.now(UTC)
    policy = load_enforcement_policy(policy_file)
    store = StateStore.from_url(redis_url, KeySchema(key_prefix))
    try:
        reader = ReportReader(store, policy)
        rows = await reader.rows(tenant, now)
        pause = await reader.pause(tenant, now)
    except StoreUnavailable as error:
        raise OSError(str(error)) from None
    finally:
        await store.close()
    if fmt == "json":
        return to_json(tenant, rows, pause, now).decode() + "\n"
    if fmt == "csv":
        return to_csv(rows)
    header = f"Tenant {tenant}: {len(rows)} servers. {pause_line(pause)}\n"
    if policy.shadow.applies_to(tenant):
        header += "Shadow mode: edges accept this tenant's mail and count the replies they would give.\n"
    return header + to_table(rows, colour)
