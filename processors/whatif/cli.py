"""``patchgate whatif``: predict enforcement from recorded metadata before a single reply changes.

    patchgate whatif RECORDED.jsonl[.gz] [--commands PAUSES.jsonl] [--policy FILE] [--enforce-from DATE]
    patchgate whatif --kafka [--topic T] [--since DATE] [--until DATE] ...
    patchgate whatif RECORDED.jsonl --policy new.toml --against current.toml

Exit codes: 0 done (skipped records are listed, not fatal), 2 bad arguments, unreadable input, a
policy or catalog that fails validation, or no record to simulate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from processors.errors import PatchgateError

Result = TypeVar("Result")

FORMATS = ("table", "csv", "json", "html")
PROGRESS_AFTER = 2.0  # seconds before a progress bar appears (on a terminal only)


class WhatifError(PatchgateError):
    """A bad argument or an input with nothing to simulate: one line, exit 2."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "whatif", help="predict whose mail a policy would defer or reject, from recorded metadata",
        description=("Run recorded metadata through the worker's logic and the edge's decision and print, per "
                     "tenant and server, the stage changes and how many messages would be accepted, deferred "
                     "(450 4.7.230) or rejected (550 5.7.230), per day. With --against, compare two policies."))
    p.add_argument("file", nargs="?", type=Path, metavar="FILE",
                   help="JSONL of patchgate.metadata/1 records and batch envelopes (gzip accepted)")
    p.add_argument("--kafka", action="store_true",
                   help="read the metadata topic instead (PATCHGATE_KAFKA_BOOTSTRAP / PATCHGATE_KAFKA_CONFIG)")
    p.add_argument("--topic", help="with --kafka: the topic (default PATCHGATE_TOPIC_METADATA; in the per-tenant "
                                   "topic mode every tenant's metadata topic)")
    p.add_argument("--since", help="with --kafka: first broker timestamp to read (date or ISO time, UTC)")
    p.add_argument("--until", help="with --kafka: last broker timestamp to read (default: the end)")
    p.add_argument("--commands", type=Path, metavar="FILE", help="JSONL of pause commands (patchgate.command/1)")
    p.add_argument("--policy", type=Path, metavar="FILE", help="policy TOML (default: packaged)")
    p.add_argument("--against", type=Path, metavar="FILE",
                   help="compare with this policy: servers whose stage dates change, messages that move")
    p.add_argument("--catalog", type=Path, metavar="FILE", help="Exchange build catalog CSV (default: packaged)")
    p.add_argument("--products-dir", type=Path, metavar="DIR", help="product catalogs folder (default: packaged)")
    p.add_argument("--enforce-from", metavar="DATE",
                   help="patchgate starts here (date or ISO time, UTC); earlier records are left out "
                        "(default: the first record)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write here instead of stdout")
    p.set_defaults(handler=cmd_whatif)


def parse_time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise WhatifError(f"{option}: expected YYYY-MM-DD or an ISO time, got {text!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class ProgressBar:
    """A progress bar on stderr, only on a terminal and only once a run takes a few seconds."""

    def __init__(self, progress: Any, enabled: bool) -> None:
        self.progress = progress
        self.enabled = enabled
        self.started = time.monotonic()
        self.drawn = 0.0

    def __call__(self, records: int) -> None:
        if not self.enabled or records % 2048:
            return
        now = time.monotonic()
        if now - self.started < PROGRESS_AFTER or now - self.drawn < 0.2:
            return
        self.drawn = now
        done, total = self.progress.done, max(self.progress.total, 1)
        share = min(done / total, 1.0)
        bar = "#" * int(share * 30)
        sys.stderr.write(f"\r  whatif [{bar:<30}] {share:4.0%}  {records:,} records  {now - self.started:5.0f}s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.drawn:
            sys.stderr.write("\r" + " " * 78 + "\r")
            sys.stderr.flush()


def cmd_whatif(args: argparse.Namespace) -> int:
    from processors.whatif.diff import compare, diff_json, diff_table
    from processors.whatif.render import to_csv, to_html, to_json, to_table

    if (args.file is None) == (not args.kafka):
        raise WhatifError("give either a FILE or --kafka")
    enforce_from = parse_time(args.enforce_from, "--enforce-from")
    for option, policy in (("--policy", args.policy), ("--against", args.against)):
        if policy is not None or option == "--policy":
            _check_files(option, policy, args)
    open_source, settings = _source(args)
    commands = _command_lines(args.commands)
    if args.against is not None:
        if args.format not in ("table", "json"):
            raise WhatifError("--against prints a table or JSON (--format table|json)")
        result = run_to_end(compare(open_source, commands, new=args.policy, current=args.against,
                                    catalog=args.catalog, products_dir=args.products_dir,
                                    enforce_from=enforce_from, settings=settings))
        _no_records(result.new)
        text: str | bytes = diff_json(result) if args.format == "json" else diff_table(result)
    else:
        prediction = run_to_end(_simulate(open_source, commands, args, enforce_from, settings))
        _no_records(prediction)
        render: dict[str, Callable[[Any], str | bytes]] = {"table": to_table, "csv": to_csv, "json": to_json,
                                                            "html": to_html}
        text = render[args.format](prediction)
    _write(text, args.output)
    return 0


def run_to_end(coroutine: Coroutine[Any, Any, Result]) -> Result:
    """``asyncio.run(coroutine)``, its result handed back outside the event loop's main task.

    Python 3.11's ``asyncio.run`` formats its main task, the task's result included, when it puts
    the SIGINT handler back; a prediction's text is as large as the prediction (every server's
    every day), so a task returning it would cost a run time and memory twice over for nothing.
    """
    results: list[Result] = []

    async def main() -> None:
        results.append(await coroutine)

    asyncio.run(main())
    return results[0]


def _check_files(option: str, policy: Path | None, args: argparse.Namespace) -> None:
    """Load the policy, catalog and product catalogs once, so a bad one stops the run with one line."""
    from processors.worker.inprocess import load_policy_snapshot

    try:
        load_policy_snapshot(policy, args.catalog, args.products_dir)
    except (OSError, UnicodeDecodeError) as error:
        raise WhatifError(f"cannot read the policy or a catalog ({option} {policy or 'packaged'}): {error}") from None
    except PatchgateError as error:
        raise WhatifError(f"{option} {policy or '(packaged policy)'}: {error}") from None


def _no_records(prediction: Any) -> None:
    if prediction.records == 0:
        before = (f"; {prediction.before_enforce_from} records lie before --enforce-from"
                  if prediction.before_enforce_from else "")
        raise WhatifError(f"no record to simulate in the input ({prediction.skipped} skipped{before})")


def _source(args: argparse.Namespace) -> tuple[Callable[[Any], Iterable[Any]], Any]:
    """A function opening the input anew (a policy diff reads it twice), reporting progress, and
    the settings the simulation runs with: for a topic, the deployment's (its topic names and
    topic mode, so records are admitted against the topic they come from); None for a file."""
    from processors.whatif.sources import file_records, kafka_records

    if args.file is not None:
        if args.since or args.until or args.topic:
            raise WhatifError("--topic, --since and --until go with --kafka")
        path: Path = args.file
        return (lambda progress: file_records(path, progress)), None
    from processors.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        raise WhatifError(str(error)) from None
    since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    topics = [args.topic] if args.topic else _metadata_topics(settings)
    return (lambda progress: kafka_records(settings.kafka, topics, since, until, progress)), settings


def _metadata_topics(settings: Any) -> list[str]:
    """The metadata topic; in the per-tenant topic mode, every tenant's the brokers hold."""
    if not settings.per_tenant_topics:
        return [settings.topic_metadata]
    from processors.kafka.topics import tenant_topics
    from processors.kafka.types import KafkaException

    try:
        topics = tenant_topics(settings, timeout=10)
    except KafkaException as error:
        raise WhatifError(f"cannot list the tenants' metadata topics: {error}") from None
    if not topics:
        raise WhatifError(f"no tenant metadata topic ({settings.topic_metadata}.<tenant>) on the brokers")
    return topics


def _command_lines(path: Path | None) -> list[tuple[str, bytes]]:
    from processors.whatif.sources import numbered_lines

    return list(numbered_lines(path)) if path is not None else []


async def _simulate(open_source: Callable[[Any], Iterable[Any]], commands: list[tuple[str, bytes]],
                    args: argparse.Namespace, enforce_from: datetime | None, settings: Any) -> Any:
    from processors.whatif.simulate import Simulation, parse_commands
    from processors.whatif.sources import Progress

    progress = Progress()
    bar = ProgressBar(progress, sys.stderr.isatty())
    simulation = Simulation(policy_file=args.policy, catalog_file=args.catalog, products_dir=args.products_dir,
                            enforce_from=enforce_from, settings=settings, on_record=bar)
    try:
        return await simulation.run(open_source(progress),
                                    parse_commands(commands, simulation.settings.topic_commands, simulation.prediction))
    finally:
        bar.close()


def _write(text: str | bytes, output: Path | None) -> None:
    data = text.encode() if isinstance(text, str) else text
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as error:
        raise WhatifError(f"--output {output}: {error.strerror or error}") from None
