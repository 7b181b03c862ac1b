"""The ``taskstream`` command line: the parser and the entry point.

Every sub-command maps an operator's intent onto one part of the system. Mistakes print one
clear line and exit non-zero (2 for input the parser refuses, 1 for what only running finds
out); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from schemas.errors import TaskstreamError
from streams import logs
from streams.cli import (
    batch,
    bench,
    broker,
    config,
    dlq,
    manage,
    parts,
    rebuild,
    schedules,
    sessions,
    tail,
    tasks,
    topics,
)
from streams.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]

# One module per command group; each adds its sub-commands to the parser.
GROUPS = (
    broker,
    parts,
    tasks,
    manage,
    tail,
    dlq,
    rebuild,
    topics,
    batch,
    config,
    bench,
    schedules,
    sessions,
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line: ``taskstream COMMAND: what is wrong``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="taskstream",
        description="Kafka-native, event-sourced task distributor for CRM automation sessions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic ValidationError: one line per problem
        print(f"taskstream: invalid settings: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    logs.configure(settings.log_level, args.command)
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except TaskstreamError as exc:
        print(f"taskstream {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:
        return 130
