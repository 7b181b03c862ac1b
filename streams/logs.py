"""Logging set-up shared by every process, with credentials masked (``schemas.masking``)."""

from __future__ import annotations

import logging

from schemas.masking import mask_text

__all__ = ["MaskingFormatter", "configure"]


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def configure(level: str = "INFO", name: str = "taskstream") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        MaskingFormatter(f"%(asctime)s {name}[%(process)d] %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
