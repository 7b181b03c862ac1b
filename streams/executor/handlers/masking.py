"""Keeping secrets out of log lines, errors and outputs of the built-in handlers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from schemas.credentials import MASK, is_credential_name, mask_url

__all__ = ["MASK", "Masker", "is_sensitive", "url_secrets"]


def is_sensitive(name: str) -> bool:
    """Whether a header or query parameter name holds a credential (the one rule:
    ``schemas.credentials``)."""
    return is_credential_name(name)


def url_secrets(url: str) -> set[str]:
    """The credentials a URL carries: its password and sensitive query values."""
    secrets: set[str] = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets.add(parts.password)
        for name, value in parse_qsl(parts.query):
            if is_sensitive(name) and value:
                secrets.add(value)
    except ValueError:
        pass
    return secrets


class Masker:
    """Replaces each of a set of secrets by ``***`` in text, JSON values and URLs."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, MASK)
        return value

    def json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.json(v) for k, v in value.items()}
        return value

    def url(self, url: str) -> str:
        """The URL with userinfo dropped and sensitive query values masked."""
        return self.text(mask_url(url))
