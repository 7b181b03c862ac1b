"""The ``taskstream`` command line.

Every sub-command maps an operator's intent onto one part of the system. Mistakes print one
clear line and exit non-zero; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from schemas.errors import TaskstreamError
from streams import logs
from streams.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka.embedded import EmbeddedBroker

    broker = EmbeddedBroker(port=args.port)
    broker.start()
    print(
        f"embedded broker at {broker.bootstrap_servers} (log: {broker.log_path}); Ctrl-C stops it"
    )
    try:
        import signal

        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def _parse_json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskstreamError(
            f"{what} is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise TaskstreamError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskstream",
        description="Kafka-native, event-sourced task distributor for CRM automation sessions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker in the foreground")
    p.add_argument("--port", type=int, default=None, help="port (default: a free loopback port)")
    p.set_defaults(handler=_cmd_broker)

    from streams import batch_cli, cli_commands, config_dump
    from streams.bench import main as bench

    cli_commands.register(sub)
    batch_cli.register(sub)
    config_dump.register(sub)
    bench.register(sub)
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


if __name__ == "__main__":
    raise SystemExit(main())
