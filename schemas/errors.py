"""Typed errors of the wire contract. ``TaskstreamError`` is the root of every package's errors."""

from __future__ import annotations


class TaskstreamError(Exception):
    """Root of every error taskstream raises on purpose."""


class SchemaError(TaskstreamError):
    """A schema file or the operation catalog is invalid."""


class DecodeError(TaskstreamError):
    """Bytes could not be decoded into a known record."""


class BadMagicError(DecodeError):
    """The bytes do not start with the Avro single-object marker 0xC3 0x01."""


class UnknownFingerprintError(DecodeError):
    """The writer schema's fingerprint is not one taskstream knows."""


class EncodeError(TaskstreamError):
    """A value could not be encoded with its schema."""
