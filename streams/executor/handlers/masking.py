"""Keeping secrets out of log lines, errors and outputs of the built-in handlers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_SENSITIVE_WORDS = ("auth", "token", "key", "secret", "password", "cookie", "signature", "session")


def is_sensitive(name: str) -> bool:
    """Whether a header or query parameter name suggests its value is a credential."""
    lowered = name.lower()
    return any(word in lowered for word in _SENSITIVE_WORDS)


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
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            query = urlencode(
                [(k, MASK if is_sensitive(k) else v) for k, v in parse_qsl(parts.query)],
                safe="*",
            )
            return self.text(urlunsplit((parts.scheme, host, parts.path, query, "")))
        except ValueError:
            return self.text(url)
