"""How credentials are masked wherever something is shown: the HTTP view's rows
(``api.redact``), the CLI, log lines (``streams.logs``), the dashboard's event tail and the
built-in handlers' errors and outputs. What counts as a credential is ``schemas.credentials``
(the one rule); this module only replaces what that rule finds -- and, in free text, what
looks like one -- by ``***``.

Events and dead letters keep payloads as submitted (sealed, ``streams.secrets``); masking
happens where documents are shown. Pure standard library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from schemas.credentials import (
    MASK,
    is_credential_name,
    is_credential_parameter,
    is_sealed,
    url_has_credentials,
)

__all__ = ["MASK", "Masker", "mask_document", "mask_text", "mask_url"]

# Credentials inside free text (errors, progress messages, log lines): a scheme's token, or a
# name the credential rule names (``schemas.credentials.is_credential_name``) followed by : or =
# and the value.
_SCHEME_TOKEN = re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+")
_NAME_AND_SEPARATOR = re.compile(r"""([A-Za-z][\w.-]*)["']?\s*[:=]\s*["']?""")
_VALUE = re.compile(r"""[^\s"',}&]+""")


def _mask_named_values(text: str) -> str:
    pieces: list[str] = []
    done = 0
    for found in _NAME_AND_SEPARATOR.finditer(text):
        if found.start() < done or not is_credential_name(found.group(1)):
            continue
        value = _VALUE.match(text, found.end())
        if value is None or value.group(0).lower() in ("bearer", "basic", MASK):
            continue  # nothing there, or a scheme whose token is masked already
        pieces += [text[done : value.start()], MASK]
        done = value.end()
    return "".join(pieces) + text[done:]


def mask_text(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``***``."""
    return _mask_named_values(_SCHEME_TOKEN.sub(r"\1" + MASK, text))


def mask_url(url: str) -> str:
    """``url`` with its userinfo dropped and credential-named query values as ``***``."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        query = urlencode(
            [(k, MASK if is_credential_parameter(k) else v) for k, v in parse_qsl(parts.query)],
            safe="*",
        )
        return urlunsplit((parts.scheme, host, parts.path, query, ""))
    except ValueError:
        return url


def mask_document(value: Any) -> Any:
    """A copy of a JSON-like document for display: values under credential names and sealed
    values become ``***``, credentials inside strings are masked (URLs by ``mask_url``, text
    by ``mask_text``), and strings that are not valid Unicode (unpaired surrogates) are made
    printable. Every place that *shows* a payload, an output or an error goes through here."""
    if is_sealed(value):
        return MASK
    if isinstance(value, dict):
        return {
            _printable(str(k)): (
                MASK if is_credential_name(str(k)) and v not in (None, "") else mask_document(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_document(v) for v in value]
    if isinstance(value, str):
        if url_has_credentials(value):
            value = mask_url(value)
        return mask_text(_printable(value))
    return value


def _printable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


class Masker:
    """Replaces each of a set of known secrets by ``***`` in text, JSON values and URLs (a
    handler knows the credentials it was given and keeps them out of what it reports)."""

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
        """The URL with userinfo dropped and credential query values masked."""
        return self.text(mask_url(url))
