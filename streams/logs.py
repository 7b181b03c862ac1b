"""Logging set-up shared by every process, with secrets masked."""

from __future__ import annotations

import logging
import re

_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:token|password|api[_-]?key|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
)


def mask_secrets(text: str) -> str:
    """Replace anything that looks like a credential with ``***``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


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
