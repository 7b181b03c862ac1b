"""``taskstream broker``: a local broker in the foreground (the embedded one, or Apache Kafka)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streams.settings import Settings


def _cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    """A broker in the foreground until Ctrl-C/SIGTERM. The first line of standard output is
    ``KAFKA_BOOTSTRAP_SERVERS=host:port`` (for ``eval``/``export``); the address is also
    written to the data dir, where the other commands find it."""
    import signal
    from pathlib import Path

    from streams.cli.broker_address import remember_broker
    from streams.kafka.apache import ApacheKafka
    from streams.kafka.embedded import EmbeddedBroker

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


def register(sub: Any) -> None:
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
