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
    """A broker in the foreground until Ctrl-C/SIGTERM. The first line of standard output is
    ``KAFKA_BOOTSTRAP_SERVERS=host:port`` (for ``eval``/``export``); the address is also
    written to the data dir, where the other commands find it."""
    import signal
    from pathlib import Path

    from streams.kafka.apache import ApacheKafka
    from streams.kafka.embedded import EmbeddedBroker
    from streams.ops import remember_broker

    broker: ApacheKafka | EmbeddedBroker
    if args.apache_kafka:
        broker = ApacheKafka(Path(settings.data_dir) / "kafka", port=args.port)
        what = f"Apache Kafka (data: {broker.data_dir}, log: {broker.log_path})"
    else:
        broker = EmbeddedBroker(port=args.port)
        what = f"embedded broker, memory only (log: {broker.log_path})"
    # SIGTERM/SIGINT are waited for, not handled, so that a signal during start-up still
    # reaches the finally below.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    address_file = None
    try:
        broker.start()
        address_file = remember_broker(settings, broker.bootstrap_servers)
        print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
        print(f"{what}; Ctrl-C stops it", file=sys.stderr, flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        broker.stop()
        if address_file is not None:
            address_file.unlink(missing_ok=True)
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

    p = sub.add_parser(
        "broker", help="run a broker in the foreground: the embedded one, or Apache Kafka"
    )
    p.add_argument("--port", type=int, default=None, help="port (default: a free loopback port)")
    p.add_argument(
        "--apache-kafka",
        action="store_true",
        help="run Apache Kafka 4 (KRaft, one node) from tools/kafka (fetched with mvn when "
        "missing); its data lives under the data dir and survives a restart",
    )
    p.set_defaults(handler=_cmd_broker)

    from streams import batch_cli, cli_commands, config_dump, topics_cli
    from streams.bench import main as bench

    cli_commands.register(sub)
    topics_cli.register(sub)
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
