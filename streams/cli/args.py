"""Argument converters: argparse ``type=`` callables, so bad input fails at parse time.

Each converter raises ``argparse.ArgumentTypeError`` with one sentence naming what is wrong;
:class:`streams.cli.main.OneLineParser` prints it as ``taskstream COMMAND: argument --x: ...``
and exits with code 2 before any setting is read or any broker is contacted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit


def json_object(text: str) -> dict[str, Any]:
    """A JSON object (``--payload``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {type(value).__name__}")
    return value


def json_objects(text: str) -> list[dict[str, Any]]:
    """A JSON array of objects (``submit --steps``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise argparse.ArgumentTypeError("must be a JSON array of objects")
    return value


@dataclass(frozen=True)
class SessionArg:
    """``SESSION_ID:CLIENT_ID[:MAX_CONCURRENT]`` as given to ``worker --session``."""

    session_id: str
    client_id: str
    max_concurrent: int = 1


def session(text: str) -> SessionArg:
    """``SESSION_ID:CLIENT_ID`` or ``SESSION_ID:CLIENT_ID:MAX_CONCURRENT``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected SESSION_ID:CLIENT_ID or SESSION_ID:CLIENT_ID:MAX_CONCURRENT"
        )
    try:
        limit = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: MAX_CONCURRENT must be a number") from None
    return SessionArg(parts[0], parts[1], limit)


def handlers(spec: str) -> dict[str, Any]:
    """``package.module`` (its ``HANDLERS`` mapping) or ``package.module:name`` (a mapping, or a
    function returning one): operation -> handler."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot import handler module {module_name!r}: {exc}"
        ) from None
    target = getattr(module, attr or "HANDLERS", None)
    if target is None:
        raise argparse.ArgumentTypeError(f"{module_name} has no {attr or 'HANDLERS'}")
    found = target() if callable(target) else target
    if not isinstance(found, dict) or not found:
        raise argparse.ArgumentTypeError(f"{spec} must be a non-empty dict of operation -> handler")
    return found


def browser(text: str) -> Any:
    """``chromium``, ``chromium:/path/to/binary`` or ``cdp:ws://...`` (``worker --browser``)."""
    from streams.errors import ConfigurationError
    from streams.executor.handlers.playwright_driver import BrowserTarget

    try:
        return BrowserTarget.parse(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--browser {text!r}: ")) from None


_ATTACH_KEYS = ("name", "size", "type")
# A comma starts an option only before one of its keys: a URL's own commas stay in the URL.
_ATTACH_OPTION = re.compile(",(?=(?:" + "|".join(_ATTACH_KEYS) + ")=)")


def attachment(text: str) -> dict[str, Any]:
    """``URL[,name=NAME][,size=BYTES][,type=MEDIA/TYPE]`` (``--attach``); the name defaults
    to the URL's last path segment. Checked by the rules a submit's attachments meet."""
    from schemas.commands import TaskAttachment
    from streams.domain.attachments import one_attachment_problems

    url, *options = _ATTACH_OPTION.split(text)
    found: dict[str, str] = {}
    for option in options:
        key, _, value = option.partition("=")
        if key in found:
            raise argparse.ArgumentTypeError(f"{key}= given twice in {text!r}")
        found[key] = value
    size: int | None = None
    if "size" in found:
        try:
            size = int(found["size"])
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"size= must be a number of bytes, not {found['size']!r}"
            ) from None
    try:
        parts = urlsplit(url)
        default_name = unquote(parts.path.rstrip("/").rpartition("/")[2]) or parts.hostname or url
    except ValueError:
        default_name = url
    value = TaskAttachment(
        url=url,
        name=found.get("name", default_name),
        size_bytes=size,
        content_type=found.get("type"),
    )
    problems = list(one_attachment_problems(value, "attachment"))
    if problems:
        raise argparse.ArgumentTypeError("; ".join(problems))
    return value.model_dump()
