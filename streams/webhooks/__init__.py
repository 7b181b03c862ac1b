"""Inbound webhooks: the rules that turn a sender's message into a task, and its signature."""

from streams.webhooks.rules import (
    MappedTask,
    NoRuleMatches,
    RulesError,
    Source,
    WebhookMessageError,
    WebhookRules,
    load_rules,
    parse_rules,
    task_id_for,
)
from streams.webhooks.signature import sign, verify

__all__ = [
    "MappedTask",
    "NoRuleMatches",
    "RulesError",
    "Source",
    "WebhookMessageError",
    "WebhookRules",
    "load_rules",
    "parse_rules",
    "sign",
    "task_id_for",
    "verify",
]
