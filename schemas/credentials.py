"""Which values in a task payload are credentials: the one rule, used everywhere.

What is shown of them -- by the HTTP view, the CLI, log lines, the built-in handlers' errors
and outputs -- is masked by ``schemas.masking``, and the submit door seals them before a
command is produced (``streams.secrets``), so their plaintext never reaches a Kafka record or
a RocksDB store. The decider refuses a submit that
carries one unsealed (raw producers skip the door). All of them ask this module.

A credential is:

* the value of a field whose name says so -- ``bearerToken``, ``apiKey``, ``password``,
  ``Authorization``, ``X-Api-Key``, ``client_secret``, ``cookie``, ``signature`` ... (names are
  compared in lower case with separators removed), at any depth, header maps included; names
  that are about a credential (``apiKeyHeader``, ``tokenType``, ``secretName``) are not;
* a URL string carrying a password in its userinfo or a credential-named query parameter
  (``https://user:pw@host``, ``...?token=...``), whatever field holds it.

Pure standard library: the domain imports it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MASK = "***"

_SECRET_NAME = re.compile(
    r"password|passwd|passphrase|secret|token|apikey|authorization|cookie|credential"
    r"|privatekey|accesskey|signature|^auth$|^pwd$|^pin$|^sig$"
)

Path = tuple[str | int, ...]
"""Where a value sits in a document: keys and list indices from the top."""


# Names about a credential rather than holding one: apiKeyHeader, tokenType, secretName ...
_ABOUT_SECRET = re.compile(r"(header|name|type|field|url|uri|expiry|expiresat|expiresin)$")


def is_credential_name(name: str) -> bool:
    """Whether a payload field, header, query parameter or setting called ``name`` holds a
    credential."""
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    return _SECRET_NAME.search(flat) is not None and _ABOUT_SECRET.search(flat) is None


def is_credential_parameter(name: str) -> bool:
    """A URL query parameter that holds a credential: a credential name, or plain ``key``
    (``?key=`` carries API keys in URLs; as a payload field ``key`` is an ordinary name)."""
    return is_credential_name(name) or name.lower() == "key"


def url_credentials(value: str) -> set[str]:
    """The credentials an http(s) URL carries: its password and the values of its
    credential-named query parameters (empty for anything else)."""
    if "://" not in value:
        return set()
    found: set[str] = set()
    try:
        parts = urlsplit(value)
        if parts.password:
            found.add(parts.password)
        found.update(v for k, v in parse_qsl(parts.query) if is_credential_parameter(k) and v)
    except ValueError:
        return set()
    return found


def url_has_credentials(value: str) -> bool:
    """Whether ``value`` is an http(s) URL with a password or a credential-named query value."""
    return bool(url_credentials(value))


SEALED = "$sealed"
"""The key that marks a sealed value: ``{"$sealed": "<scheme>", ...}`` (``streams.secrets``)."""


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is a sealed credential (its shape only; opening needs the key)."""
    return isinstance(value, dict) and isinstance(value.get(SEALED), str)


def credentials(document: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every credential in plaintext in a JSON-like document, as (path, value), outermost
    first. A value under a credential-named field is one credential whatever its type; nothing
    inside it is visited again. Sealed values are not credentials in plaintext."""
    if is_sealed(document):
        return
    if isinstance(document, dict):
        for key, value in document.items():
            here = (*path, str(key))
            if is_credential_name(str(key)) and value not in (None, "") and not is_sealed(value):
                yield here, value
            elif not is_credential_name(str(key)):
                yield from credentials(value, here)
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from credentials(value, (*path, index))
    elif isinstance(document, str) and url_has_credentials(document):
        yield path, document


def describe(path: Path) -> str:
    """``payload.customHeaders.Authorization`` for a path inside a payload."""
    out = "payload"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def replace_credentials(document: Any, replace: Any) -> Any:
    """A copy of ``document`` with each credential in plaintext replaced by
    ``replace(path, value)`` (the same walk as :func:`credentials`)."""
    found = dict(credentials(document))
    if not found:
        return document
    return _rebuild(document, (), found, replace)


def _rebuild(value: Any, path: Path, found: dict[Path, Any], replace: Any) -> Any:
    if path in found:
        return replace(path, value)
    if isinstance(value, dict) and not is_sealed(value):
        return {k: _rebuild(v, (*path, str(k)), found, replace) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebuild(v, (*path, i), found, replace) for i, v in enumerate(value)]
    return value


def comparable(document: Any) -> Any:
    """``document`` with every credential, sealed or not, as ``***``: what two submits of one
    task are compared by. Sealing is randomized, so a resubmit of the same credential never has
    the same ciphertext; credentials do not take part in the comparison."""
    if is_sealed(document):
        return MASK
    if isinstance(document, dict):
        return {
            k: MASK if is_credential_name(str(k)) and v not in (None, "") else comparable(v)
            for k, v in document.items()
        }
    if isinstance(document, list):
        return [comparable(v) for v in document]
    if isinstance(document, str) and url_has_credentials(document):
        return MASK
    return document
