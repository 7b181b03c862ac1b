"""The README's security section as a user follows it: its key command makes a key ring that
seals and opens, `api.access new` prints a table its tokens file format accepts, and the
section's own TOML example loads once given a digest."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from unittest import mock

from api.access import AccessBook, load_tokens_file, token_digest
from api.access import _main as access_main
from streams.secrets import Keyring, open_payload, seal_payload
from streams.secrets import _main as secrets_main

ROOT = Path(__file__).resolve().parents[2]


def section() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"^## Security\n(.*?)(?=^## )", readme, flags=re.S | re.M)
    assert found, "README has no Security section"
    return found.group(1)


def run(*args: str, stdin: str | None = None) -> str:
    """``python -m <module> <args>``, run in this process (its ``_main``), stdout captured."""
    assert args[0] == "-m", args
    main = {"streams.secrets": secrets_main, "api.access": access_main}[args[1]]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), mock.patch("sys.stdin", io.StringIO(stdin or "")):
        assert main(list(args[2:])) == 0
    return out.getvalue()


def test_the_key_command_makes_a_working_key_ring() -> None:
    [bash] = re.findall(r"```bash\n(.*?)```", section(), flags=re.S)
    command = re.search(r'"\$\((python -m [^)]+)\)"', bash)
    assert command, bash
    entry = run(*command.group(1).split()[1:]).strip()  # drop "python"
    ring = Keyring.parse(entry)
    payload = {"bearerToken": "t0ken"}
    assert open_payload(ring, "acme", seal_payload(ring, "acme", payload)) == payload


def test_the_tokens_file_example_and_the_new_command(tmp_path: Path) -> None:
    [example] = re.findall(r"```toml\n(.*?)```", section(), flags=re.S)
    path = tmp_path / "tokens.toml"
    path.write_text(example.replace("sha256:<64 hex digits>", token_digest("some-token")))
    [(digest, principal)] = load_tokens_file(path)
    assert digest == token_digest("some-token")
    assert (principal.name, principal.clients, principal.scope) == (
        "acme-dashboard",
        frozenset({"acme"}),
        "read",
    )
    printed = run("-m", "api.access", "new", "ops")
    token = re.search(r"it is not stored anywhere\): (\S+)", printed)
    assert token
    path.write_text(printed)
    book = AccessBook.build(tokens_file=path)
    assert book is not None
    found = book.principal(token.group(1))
    assert found is not None and found.name == "ops"
    assert run("-m", "api.access", "digest", stdin=token.group(1) + "\n").strip() == (
        token_digest(token.group(1))
    )
