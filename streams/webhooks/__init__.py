"""Inbound webhooks: the rules that turn a sender's message into a task, and its signature."""

from streams.webhooks.rules import (
    ACTOR_PREFIX,
    MappedTask,
    NoRuleMatches,
    RulesError,
    Source,
    WebhookMessageError,
    WebhookRules,
    load_rules,
    parse_rules,
    source_of_actor,
    task_id_for,
    webhook_actor,
)
from streams.webhooks.signature import sign, verify

__all__ = [
    "ACTOR_PREFIX",
    "MappedTask",
    "NoRuleMatches",
    "RulesError",
    "Source",
    "WebhookMessageError",
    "WebhookRules",
    "load_rules",
    "parse_rules",
    "sign",
    "source_of_actor",
    "task_id_for",
    "verify",
    "webhook_actor",
]
