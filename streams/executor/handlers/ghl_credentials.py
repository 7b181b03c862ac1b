"""Per-client GoHighLevel credentials, from the file ``TASKSTREAM_GHL_CREDENTIALS_FILE`` names.

Each taskstream client is one HighLevel sub-account: its location id and a Bearer token (a
private integration token of the sub-account, or an OAuth access token issued for it). TOML::

    [acme]
    location_id = "ve9EPM428h8vShlRW1KT"
    token = "pit-5f0c..."

or JSON of the same shape (``{"acme": {"location_id": ..., "token": ...}}``, chosen by a
``.json`` suffix). The tokens stay in this file and in the executor's memory: they never go into
a payload, the event log, a log line or an error.

The file is read again when its modification time changes, so a job that refreshes OAuth
tokens can rewrite it (write a new file and rename it over the old one). A broken new version
is reported in the log and the last good one stays in use; a broken file at start is an error.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from streams.errors import ConfigurationError

log = logging.getLogger(__name__)

VARIABLE = "TASKSTREAM_GHL_CREDENTIALS_FILE"
_FIELDS = frozenset({"location_id", "token"})


class GhlCredentialsError(ConfigurationError):
    """The credentials file is missing, unreadable or malformed; the message names the place."""


@dataclass(frozen=True)
class GhlAccount:
    """One client's sub-account: where its requests go and the token they carry."""

    location_id: str
    token: SecretStr


def parse_credentials(text: str, source: str) -> dict[str, GhlAccount]:
    """``client id -> GhlAccount`` of a credentials document (TOML, or JSON for ``*.json``)."""
    document: Any
    try:
        if source.endswith(".json"):
            document = json.loads(text)
        else:
            document = tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise GhlCredentialsError(f"{source}: not valid {_kind(source)}: {exc}") from None
    if not isinstance(document, Mapping):
        raise GhlCredentialsError(f"{source}: expected a table of client id -> credentials")
    accounts: dict[str, GhlAccount] = {}
    for client, entry in document.items():
        where = f"{source}: client {client!r}"
        if not isinstance(entry, Mapping):
            raise GhlCredentialsError(f"{where}: expected a table with location_id and token")
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise GhlCredentialsError(
                f"{where}: unknown field {unknown[0]!r} (expected location_id and token)"
            )
        for name in sorted(_FIELDS):
            value = entry.get(name)
            if not isinstance(value, str) or not value.strip():
                raise GhlCredentialsError(f"{where}: {name} is required (a non-empty string)")
        accounts[str(client)] = GhlAccount(entry["location_id"], SecretStr(entry["token"]))
    return accounts


def _kind(source: str) -> str:
    return "JSON" if source.endswith(".json") else "TOML"


class GhlCredentials:
    """The accounts of a credentials file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._accounts = self._load()  # a broken file at start is an error

    @classmethod
    def of(cls, accounts: Mapping[str, GhlAccount]) -> GhlCredentials:
        """Credentials held in memory (tests, embedding): never re-read."""
        self = cls.__new__(cls)
        self.path = Path("<memory>")
        self._stamp = None
        self._accounts = dict(accounts)
        return self

    def _stat(self) -> os.stat_result:
        try:
            return self.path.stat()
        except OSError as exc:
            raise GhlCredentialsError(
                f"{VARIABLE}: cannot read {self.path}: {exc.strerror}"
            ) from None

    def _load(self) -> dict[str, GhlAccount]:
        info = self._stat()
        try:
            text = self.path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GhlCredentialsError(f"{VARIABLE}: cannot read {self.path}: {exc}") from None
        accounts = parse_credentials(text, str(self.path))
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "%s is readable by other users (mode %o): chmod 600 it, it holds tokens",
                self.path,
                stat.S_IMODE(info.st_mode),
            )
        self._stamp = (info.st_mtime_ns, info.st_size)
        return accounts

    def _refresh(self) -> None:
        if self._stamp is None:
            return
        try:
            info = self.path.stat()
        except OSError as exc:
            log.error(
                "%s: cannot stat %s (%s): keeping the last good credentials",
                VARIABLE,
                self.path,
                exc.strerror,
            )
            return
        if (info.st_mtime_ns, info.st_size) == self._stamp:
            return
        try:
            self._accounts = self._load()
            log.info(
                "re-read GoHighLevel credentials from %s (%d clients)",
                self.path,
                len(self._accounts),
            )
        except GhlCredentialsError as exc:
            self._stamp = (info.st_mtime_ns, info.st_size)  # report a broken version once
            log.error("%s; keeping the last good credentials", exc)

    def account(self, client_id: str) -> GhlAccount | None:
        self._refresh()
        return self._accounts.get(client_id)

    def clients(self) -> list[str]:
        self._refresh()
        return sorted(self._accounts)

    def tokens(self) -> list[str]:
        """Every token (to mask them all in text bound for logs and errors)."""
        return [a.token.get_secret_value() for a in self._accounts.values()]
