"""Who may call the HTTP view, and on which clients' data: tokens, scopes and client lists.

One service runs many clients (GHL sub-accounts), so one token for everything would let any
dashboard of one client read and command every other. Access comes from two sources:

* ``TASKSTREAM_HTTP_TOKEN``: the single token, an ``admin`` token for every client (its name in
  actor records is ``admin``);
* ``TASKSTREAM_HTTP_TOKENS_FILE``: a TOML file with one table per token, keyed by the token's
  digest -- the file never holds a token itself::

      [tokens."sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
      name = "acme-dashboard"        # recorded as the actor of its commands
      clients = ["acme"]             # client ids, or ["*"] for every client
      scopes = ["read"]              # read, write, admin

  ``python -m api.access new <name>`` prints a fresh token and its table;
  ``python -m api.access digest`` prints the digest of a token read from stdin.

Scopes nest: ``write`` includes ``read``, ``admin`` includes both. ``read`` opens the GET
routes, ``write`` the commands (tasks, batch jobs, sessions), ``admin`` the dead-letter
redrive. A token limited to some clients sees only their rows: another client's task, session,
batch or batch job answers 404 as if it did not exist, listings hold only its clients, and a
command about another client's task is 404 too. Figures that add up every client (``/status``,
``/health``, ``/metrics``, ``/webhooks/activity``, the dashboard's snapshot and ``/live``) need
a token for every client (403 otherwise): they tell one client about the others' volume. The
inbound webhooks (``POST /webhooks/{source}``) take no token: their signature authenticates
them (``api.webhooks``).

Digests are SHA-256 of the token: tokens are long random strings (``new`` makes 32 random
bytes), not passwords, so a slow hash adds nothing; a leaked file does not leak tokens. The
given token's digest is compared with every entry in constant time. With neither source set
the view is open (and ``taskstream view`` refuses to bind to a non-loopback address).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from starlette.requests import Request

from streams.webhooks import ACTOR_PREFIX

from .errors import ApiError

Scope = Literal["read", "write", "admin"]
_RANK: dict[str, int] = {"read": 1, "write": 2, "admin": 3}
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
ADMIN_NAME = "admin"


class AccessConfigError(ApiError):
    """The tokens file cannot be read or is invalid; the message names the entry and field."""


@dataclass(frozen=True)
class Principal:
    """The caller a token stands for."""

    name: str
    clients: frozenset[str] | None
    """The client ids it may see; None for every client."""
    scope: Scope

    @property
    def every_client(self) -> bool:
        return self.clients is None

    def can(self, scope: Scope) -> bool:
        return _RANK[self.scope] >= _RANK[scope]

    def sees(self, client_id: str | None) -> bool:
        if self.clients is None:
            return True
        return client_id is not None and client_id in self.clients


OPEN = Principal(name="anonymous", clients=None, scope="admin")
"""The caller of a view with no token configured (loopback only)."""


def caller(request: Request) -> Principal:
    """The principal the view's authorization put on the request. A router served without the
    view's authorization (a test mounting it alone) has none: then it is open, like a view with
    no token configured."""
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else OPEN


Caller = Annotated[Principal, Depends(caller)]
"""A route parameter that receives the caller's principal."""


def token_digest(token: str) -> str:
    """``sha256:<hex>`` of ``token``, the key of its table in the tokens file."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    clients: list[str] = Field(min_length=1)
    scopes: list[Scope] = Field(min_length=1)

    @field_validator("clients")
    @classmethod
    def _every_or_some(cls, clients: list[str]) -> list[str]:
        if "*" in clients and len(clients) > 1:
            raise ValueError('"*" means every client and stands alone')
        if any(not c for c in clients):
            raise ValueError("client ids must not be empty")
        return clients


class AccessBook:
    """The principals the view knows, by token digest."""

    def __init__(self, entries: Iterable[tuple[str, Principal]]) -> None:
        self._entries = [(digest.encode(), principal) for digest, principal in entries]

    @property
    def principals(self) -> list[Principal]:
        return [p for _, p in self._entries]

    def principal(self, token: str) -> Principal | None:
        """The principal of ``token``; every entry is compared, in constant time each."""
        given = token_digest(token).encode()
        found: Principal | None = None
        for digest, principal in self._entries:
            if hmac.compare_digest(given, digest):
                found = principal
        return found

    @classmethod
    def build(
        cls, *, token: SecretStr | str | None = None, tokens_file: Path | None = None
    ) -> AccessBook | None:
        """The book of the single admin token and the tokens file; None when neither is set
        (the view is open)."""
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        entries: list[tuple[str, Principal]] = []
        if secret:
            entries.append((token_digest(secret), Principal(ADMIN_NAME, None, "admin")))
        if tokens_file is not None:
            entries.extend(load_tokens_file(tokens_file))
        if not entries:
            return None
        return cls(entries)


def load_tokens_file(path: Path) -> list[tuple[str, Principal]]:
    """The (digest, principal) entries of a tokens file; ``AccessConfigError`` naming the
    entry and field of the first problem."""
    where = "TASKSTREAM_HTTP_TOKENS_FILE"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AccessConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AccessConfigError(f"{where}: {path} is not valid TOML: {exc}") from None
    unknown = set(document) - {"tokens"}
    if unknown:
        raise AccessConfigError(
            f"{where}: {path}: unknown top-level key(s) {sorted(unknown)}; "
            'put each token under [tokens."sha256:<digest>"]'
        )
    tokens = document.get("tokens", {})
    if not isinstance(tokens, dict) or not tokens:
        raise AccessConfigError(f'{where}: {path} has no [tokens."sha256:<digest>"] table')
    entries: list[tuple[str, Principal]] = []
    names: set[str] = set()
    for digest, table in tokens.items():
        if not _DIGEST.match(digest):
            raise AccessConfigError(
                f"{where}: {path}: {digest!r} is not a token digest (sha256: and 64 lower-case "
                "hex digits; `python -m api.access digest` prints one) -- the file "
                "holds digests, never tokens"
            )
        try:
            entry = _Entry.model_validate(table)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "entry"
            raise AccessConfigError(
                f"{where}: {path}: token {digest[:15]}...: {field}: {first['msg']}"
            ) from None
        if entry.name in names or entry.name == ADMIN_NAME:
            raise AccessConfigError(
                f"{where}: {path}: token name {entry.name!r} is used twice (or is the reserved "
                f"name {ADMIN_NAME!r} of TASKSTREAM_HTTP_TOKEN); names identify actors"
            )
        if entry.name.startswith(ACTOR_PREFIX):
            raise AccessConfigError(
                f"{where}: {path}: token name {entry.name!r} starts with {ACTOR_PREFIX!r}, "
                "which names the tasks inbound webhooks submit; choose another name"
            )
        names.add(entry.name)
        scope = max(entry.scopes, key=lambda s: _RANK[s])
        clients = None if entry.clients == ["*"] else frozenset(entry.clients)
        entries.append((digest, Principal(entry.name, clients, scope)))
    return entries


def _main(argv: list[str]) -> int:
    if argv[:1] == ["digest"] and len(argv) == 1:
        token = sys.stdin.readline().strip()
        if not token:
            print("give the token on stdin", file=sys.stderr)
            return 2
        print(token_digest(token))
        return 0
    if argv[:1] == ["new"] and len(argv) == 2:
        token = secrets.token_urlsafe(32)
        print(f"# token (give it to {argv[1]}; it is not stored anywhere): {token}")
        print(f'[tokens."{token_digest(token)}"]')
        print(f'name = "{argv[1]}"\nclients = ["*"]\nscopes = ["read"]')
        return 0
    print("usage: python -m api.access new <name> | digest  (token on stdin)")
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
