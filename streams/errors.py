"""Typed errors of the write side, with messages written for an operator."""

from __future__ import annotations

from schemas.errors import DecodeError, TaskstreamError

__all__ = [
    "BrokerError",
    "ClientClosedError",
    "ClientError",
    "ConfigurationError",
    "ForwardingError",
    "InvalidCommandError",
    "PayloadTooLargeError",
    "ProcessingError",
    "RecordTooLargeError",
    "StoreError",
    "TaskstreamError",
    "TopicLayoutError",
]


class ConfigurationError(TaskstreamError):
    """Settings or an override file are invalid."""


class BrokerError(TaskstreamError):
    """The Kafka broker could not be started, reached or used."""


class TopicLayoutError(TaskstreamError):
    """An existing topic does not have the layout taskstream needs."""


class ForwardingError(TaskstreamError):
    """A command forwarded to its home partition arrived elsewhere; it is dead-lettered, never
    forwarded twice."""


class StoreError(TaskstreamError):
    """A local state store could not be opened or read."""


class ProcessingError(TaskstreamError):
    """A stream processor hit an error it cannot continue from."""


class RecordTooLargeError(DecodeError):
    """An input record is larger than ``max_payload_bytes``; it is dead-lettered undecoded."""


class ClientError(TaskstreamError):
    """The client SDK refused a request or cannot serve it."""


class InvalidCommandError(ClientError):
    """A command failed validation against the wire models; nothing was sent."""


class PayloadTooLargeError(InvalidCommandError):
    """A command is larger, encoded, than ``max_payload_bytes``; nothing was sent."""


class ClientClosedError(ClientError):
    """The client was used before ``start()`` / ``async with`` or after closing."""
