"""Sender signatures on inbound webhooks: HMAC-SHA256 of the raw body with the source's secret,
sent hex-encoded in the source's header (``sha256=`` prefix allowed, as GitHub and others send
it). Compared in constant time; the secret comes from the environment, never the rules file."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["sign", "verify"]


def sign(secret: bytes, body: bytes) -> str:
    """The header value a sender with ``secret`` sends for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``body``'s HMAC-SHA256 under ``secret``."""
    if not header or not secret:
        return False
    sent = header.strip()
    if sent.lower().startswith("sha256="):
        sent = sent[7:]
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, sent.lower())
