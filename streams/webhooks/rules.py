"""Inbound webhooks → tasks (seed 001: "webhook messages: automatically parsed and converted to
tasks"). Pure: a rules file in, a task specification or a typed refusal out; the HTTP route
(``POST /webhooks/{source}``) verifies the signature and submits what this module builds.

The rules file (TOML, named by ``TASKSTREAM_WEBHOOK_RULES``) has one table per source::

    [sources.ghl]
    secret_env = "TASKSTREAM_GHL_WEBHOOK_SECRET"  # HMAC-SHA256 key, read from the environment
    signature_header = "X-GHL-Signature"          # hex digest of the raw body ("sha256=" allowed)
    message_id = "webhookId"                      # dotted path of the sender's message id
    client_id = "locationId"                      # dotted path of the client (sub-account) id
    reply_url = "https://hooks.example/reply"     # optional: where outcome notices go

    [[sources.ghl.rules]]
    match = { type = "ContactCreate" }            # every field must equal (dotted paths)
    operation = "add_tags"
    priority = "high"                             # optional: 1..5 or a name
    payload = { contactId = "{id}", tags = ["new-lead"] }

A source without ``secret_env`` must say ``signed = false`` (an unsigned source is a decision,
never a default). Templates: a string that is exactly ``"{path}"`` takes the message's value
with its JSON type; ``{path}`` inside a longer string is replaced by its text; ``{{`` and ``}}``
are literal braces. The first rule whose ``match`` holds wins. The task id is derived from the
source and the message id, so a redelivered message names the same task and creates nothing.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import TaskstreamError

__all__ = [
    "ACTOR_PREFIX",
    "MappedTask",
    "NoRuleMatches",
    "Rule",
    "RulesError",
    "Source",
    "WebhookRules",
    "WebhookMessageError",
    "load_rules",
    "parse_rules",
    "source_of_actor",
    "task_id_for",
    "webhook_actor",
]

ACTOR_PREFIX = "webhook:"
"""Commands a webhook's message becomes name ``webhook:<source>`` as their actor."""

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z0-9_.\-]+)\}")
_WHOLE = re.compile(r"^\{([A-Za-z0-9_.\-]+)\}$")
_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_PRIORITIES = {"critical": 1, "high": 2, "normal": 3, "low": 4, "background": 5}


class RulesError(TaskstreamError):
    """The rules file is wrong; the message names the file and the field."""


class WebhookMessageError(TaskstreamError):
    """A message the source's rules cannot turn into a task (a field is missing)."""


class NoRuleMatches(WebhookMessageError):
    """No rule of the source matches the message: nothing to do (not the sender's error)."""


@dataclass(frozen=True)
class Rule:
    operation: str
    match: Mapping[str, Any] = field(default_factory=dict)
    payload: Mapping[str, Any] = field(default_factory=dict)
    priority: int | None = None


@dataclass(frozen=True)
class Source:
    name: str
    rules: tuple[Rule, ...]
    message_id: str
    client_id: str
    secret_env: str | None = None
    signature_header: str = "X-Signature"
    reply_url: str | None = None

    @property
    def signed(self) -> bool:
        return self.secret_env is not None


@dataclass(frozen=True)
class MappedTask:
    """What a message becomes: the route submits it through the one submission path."""

    source: str
    message_id: str
    task_id: str
    client_id: str
    operation: str
    payload: dict[str, Any]
    priority: int | None


@dataclass(frozen=True)
class WebhookRules:
    sources: Mapping[str, Source]

    def source(self, name: str) -> Source | None:
        return self.sources.get(name)

    @staticmethod
    def message_id(source: Source, message: Mapping[str, Any]) -> str | None:
        """The message's id under ``source``'s rules, or None when it has none."""
        try:
            return _text(_lookup(message, source.message_id), source.message_id)
        except WebhookMessageError:
            return None

    def map(self, source: Source, message: Mapping[str, Any]) -> MappedTask:
        """The task ``message`` becomes under ``source``'s first matching rule."""
        message_id = _text(_lookup(message, source.message_id), source.message_id)
        client_id = _text(_lookup(message, source.client_id), source.client_id)
        for rule in source.rules:
            if all(_lookup(message, path, None) == want for path, want in rule.match.items()):
                payload = _render(rule.payload, message)
                if source.reply_url and "notifyWebhookUrl" not in payload:
                    payload["notifyWebhookUrl"] = source.reply_url
                return MappedTask(
                    source=source.name,
                    message_id=message_id,
                    task_id=task_id_for(source.name, message_id),
                    client_id=client_id,
                    operation=rule.operation,
                    payload=payload,
                    priority=rule.priority,
                )
        raise NoRuleMatches(f"no rule of source {source.name!r} matches this message")


def task_id_for(source: str, message_id: str) -> str:
    """The task a message names: the same for every delivery of one message."""
    digest = hashlib.sha256(f"{source}\x00{message_id}".encode()).hexdigest()[:32]
    return f"webhook-{source}-{digest}"


def webhook_actor(source: str) -> str:
    """The actor of the commands a message of ``source`` becomes (shown in the task's row)."""
    return ACTOR_PREFIX + source


def source_of_actor(actor: str | None) -> str | None:
    """The webhook source an actor names, or None when the actor is not a webhook's."""
    if actor is None or not actor.startswith(ACTOR_PREFIX) or actor == ACTOR_PREFIX:
        return None
    return actor[len(ACTOR_PREFIX) :]


_MISSING = object()


def _lookup(message: Mapping[str, Any], path: str, default: Any = _MISSING) -> Any:
    value: Any = message
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif default is _MISSING:
            raise WebhookMessageError(f"{path}: required by the source's rules, missing")
        else:
            return default
    return value


def _text(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise WebhookMessageError(f"{path}: must be a non-empty string or number")
    return str(value)


def _render(template: Any, message: Mapping[str, Any]) -> Any:
    if isinstance(template, str):
        whole = _WHOLE.match(template)
        if whole:
            return _lookup(message, whole.group(1))

        def replace(m: re.Match[str]) -> str:
            if m.group(0) in ("{{", "}}"):
                return m.group(0)[0]
            value = _lookup(message, m.group(1))
            return value if isinstance(value, str) else str(value)

        return _PLACEHOLDER.sub(replace, template)
    if isinstance(template, Mapping):
        return {key: _render(value, message) for key, value in template.items()}
    if isinstance(template, list):
        return [_render(value, message) for value in template]
    return template


def load_rules(path: Path) -> WebhookRules:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesError(f"webhook rules {path}: cannot be read: {exc.strerror}") from exc
    return parse_rules(text, where=str(path))


def parse_rules(text: str, *, where: str = "webhook rules") -> WebhookRules:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{where}: not TOML: {exc}") from exc
    sources = doc.get("sources")
    if not isinstance(sources, dict) or not sources:
        raise RulesError(f"{where}: needs at least one [sources.<name>] table")
    out: dict[str, Source] = {}
    for name, table in sources.items():
        at = f"{where}: sources.{name}"
        if not _SOURCE_NAME.match(name):
            raise RulesError(f"{at}: a source name is 1-64 of a-z, 0-9, '_' and '-'")
        if not isinstance(table, dict):
            raise RulesError(f"{at}: must be a table")
        unknown = set(table) - {
            "secret_env", "signature_header", "message_id", "client_id", "reply_url", "rules",
            "signed",
        }  # fmt: skip
        if unknown:
            raise RulesError(f"{at}: unknown keys {sorted(unknown)}")
        secret_env = table.get("secret_env")
        if secret_env is None and table.get("signed") is not False:
            raise RulesError(f"{at}: give secret_env (HMAC key variable) or signed = false")
        if secret_env is not None and not isinstance(secret_env, str):
            raise RulesError(f"{at}.secret_env: must be an environment variable name")
        for key in ("message_id", "client_id"):
            if not isinstance(table.get(key), str) or not table[key]:
                raise RulesError(f"{at}.{key}: required, the dotted path of a message field")
        reply_url = table.get("reply_url")
        if reply_url is not None and not (
            isinstance(reply_url, str) and reply_url.startswith(("http://", "https://"))
        ):
            raise RulesError(f"{at}.reply_url: must be an http(s) URL")
        rules = table.get("rules")
        if not isinstance(rules, list) or not rules:
            raise RulesError(f"{at}: needs at least one [[sources.{name}.rules]] entry")
        out[name] = Source(
            name=name,
            rules=tuple(_rule(r, f"{at}.rules[{i}]") for i, r in enumerate(rules)),
            message_id=table["message_id"],
            client_id=table["client_id"],
            secret_env=secret_env,
            signature_header=str(table.get("signature_header", "X-Signature")),
            reply_url=reply_url,
        )
    return WebhookRules(out)


def _rule(table: Any, at: str) -> Rule:
    if not isinstance(table, dict):
        raise RulesError(f"{at}: must be a table")
    unknown = set(table) - {"match", "operation", "payload", "priority"}
    if unknown:
        raise RulesError(f"{at}: unknown keys {sorted(unknown)}")
    operation = table.get("operation")
    if not isinstance(operation, str) or not operation:
        raise RulesError(f"{at}.operation: required")
    match = table.get("match", {})
    payload = table.get("payload", {})
    if not isinstance(match, dict) or not isinstance(payload, dict):
        raise RulesError(f"{at}: match and payload must be tables")
    priority = table.get("priority")
    if isinstance(priority, str):
        if priority not in _PRIORITIES:
            raise RulesError(f"{at}.priority: one of {', '.join(_PRIORITIES)} or 1..5")
        priority = _PRIORITIES[priority]
    elif priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 5
    ):
        raise RulesError(f"{at}.priority: one of {', '.join(_PRIORITIES)} or 1..5")
    return Rule(operation=operation, match=match, payload=payload, priority=priority)
