"""Logging set-up shared by every process, with secrets masked."""

from __future__ import annotations

import logging
from typing import Any

from schemas.credentials import (
    MASK,
    is_credential_name,
    is_sealed,
    mask_text,
    mask_url,
    url_has_credentials,
)

__all__ = [
    "MASK",
    "MaskingFormatter",
    "configure",
    "is_secret_name",
    "mask_document",
    "mask_secrets",
]


def mask_secrets(text: str) -> str:
    """Replace anything that looks like a credential with ``***`` (``schemas.credentials``)."""
    return mask_text(text)


def is_secret_name(name: str) -> bool:
    """Whether a payload field, header or setting called ``name`` holds a credential (the one
    rule: ``schemas.credentials``)."""
    return is_credential_name(name)


def mask_document(value: Any) -> Any:
    """A copy of a JSON-like document for display: values under secret-looking names become
    ``***``, credentials inside strings are masked (``mask_secrets``), and strings that are not
    valid Unicode (unpaired surrogates) are made printable.

    Events and dead letters keep the payload as submitted (the executor needs it, a redrive
    resubmits it); every place that *shows* a payload -- the HTTP view, the CLI -- goes
    through this function.
    """
    if is_sealed(value):
        return MASK
    if isinstance(value, dict):
        return {
            _printable(str(k)): (
                MASK if is_secret_name(str(k)) and v not in (None, "") else mask_document(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_document(v) for v in value]
    if isinstance(value, str):
        if url_has_credentials(value):
            value = mask_url(value)
        return mask_secrets(_printable(value))
    return value


def _printable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


def configure(level: str = "INFO", name: str = "taskstream") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        MaskingFormatter(f"%(asctime)s {name}[%(process)d] %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
