"""The ``patchgate`` command: one entry point, one subcommand per concern.

Each concern registers its own subcommands through a ``register(subparsers)`` function, so this
module only wires them together, after setting up logging (:mod:`processors.logsetup`) for the
command. Run ``patchgate --help`` for the list.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registrars() -> list[Registrar]:
    # Imported lazily so `patchgate classify` does not pay for Kafka/Faust imports.
    from edge import cli as edge_cli
    from processors import demo
    from processors.api import cli as api_cli
    from processors.classify import cli as classify_cli
    from processors.kafka import topics_cli
    from processors.notify import cli as notify_cli
    from processors.report import cli as report_cli
    from processors.whatif import cli as whatif_cli
    from processors.worker import cli as worker_cli

    return [classify_cli.register, worker_cli.register, report_cli.register, api_cli.register,
            notify_cli.register, edge_cli.register, demo.register, topics_cli.register, whatif_cli.register]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patchgate",
        description="Report, throttle and block mail from persistently vulnerable mail servers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _registrars():
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from processors.errors import PatchgateError
    from processors.logsetup import LogFormatError, setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:  # warnings and errors of every command in PATCHGATE_LOG_FORMAT; services set their own level
        setup_logging(args.command, "WARNING")
    except LogFormatError as error:
        print(f"patchgate: {error}", file=sys.stderr)
        return 2
    try:
        return handler(args)
    except PatchgateError as error:  # the project's own errors name what to fix: one line, no traceback
        print(f"patchgate {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
