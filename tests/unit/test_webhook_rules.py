"""Inbound webhook rules: a message becomes the task its first matching rule says, with an id
derived from the message id; bad rules files fail with the field named."""

from __future__ import annotations

import pytest

from streams.webhooks import (
    NoRuleMatches,
    RulesError,
    WebhookMessageError,
    parse_rules,
    sign,
    task_id_for,
    verify,
)

RULES = """
[sources.ghl]
secret_env = "GHL_SECRET"
signature_header = "X-GHL-Signature"
message_id = "webhookId"
client_id = "locationId"
reply_url = "https://hooks.example/reply"

[[sources.ghl.rules]]
match = { type = "ContactCreate" }
operation = "add_tags"
priority = "high"
payload = { contactId = "{id}", tags = ["new-lead"], note = "from {source.name} {{raw}}" }

[[sources.ghl.rules]]
match = { type = "InboundMessage", "message.direction" = "inbound" }
operation = "send_sms"
payload = { contactId = "{contactId}", count = "{message.count}" }
"""

MESSAGE = {
    "webhookId": "wh-1",
    "locationId": "loc-9",
    "type": "ContactCreate",
    "id": "c-1",
    "source": {"name": "form"},
}


def test_the_first_matching_rule_builds_the_task() -> None:
    rules = parse_rules(RULES)
    source = rules.source("ghl")
    assert source is not None and source.signed

    task = rules.map(source, MESSAGE)

    assert task.operation == "add_tags"
    assert task.client_id == "loc-9"
    assert task.priority == 2
    assert task.payload == {
        "contactId": "c-1",
        "tags": ["new-lead"],
        "note": "from form {raw}",
        "notifyWebhookUrl": "https://hooks.example/reply",
    }
    assert task.task_id == task_id_for("ghl", "wh-1")


def test_a_whole_placeholder_keeps_the_json_type_and_dotted_paths_reach_nested_fields() -> None:
    rules = parse_rules(RULES)
    message = {
        "webhookId": 7,
        "locationId": "loc",
        "type": "InboundMessage",
        "contactId": "c-2",
        "message": {"direction": "inbound", "count": 3},
    }
    task = rules.map(rules.sources["ghl"], message)
    assert task.operation == "send_sms"
    assert task.payload["count"] == 3
    assert task.message_id == "7"


def test_a_redelivered_message_names_the_same_task_and_another_message_another() -> None:
    rules = parse_rules(RULES)
    source = rules.sources["ghl"]
    first = rules.map(source, MESSAGE)
    again = rules.map(source, dict(MESSAGE))
    other = rules.map(source, {**MESSAGE, "webhookId": "wh-2"})
    assert first.task_id == again.task_id != other.task_id
    assert task_id_for("ghl", "x") != task_id_for("other", "x")


def test_no_matching_rule_and_missing_fields_are_typed_refusals() -> None:
    rules = parse_rules(RULES)
    source = rules.sources["ghl"]
    with pytest.raises(NoRuleMatches):
        rules.map(source, {**MESSAGE, "type": "Unknown"})
    with pytest.raises(WebhookMessageError, match="locationId"):
        rules.map(source, {"webhookId": "1", "type": "ContactCreate"})
    with pytest.raises(WebhookMessageError, match="^id: required"):
        rules.map(source, {"webhookId": "1", "locationId": "l", "type": "ContactCreate"})


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "at least one"),
        (
            "[sources.x]\nmessage_id='a'\nclient_id='b'\n[[sources.x.rules]]\noperation='o'\n",
            "secret_env",
        ),
        (
            "[sources.x]\nsigned=false\nclient_id='b'\n[[sources.x.rules]]\noperation='o'\n",
            "message_id",
        ),
        ("[sources.x]\nsigned=false\nmessage_id='a'\nclient_id='b'\n", "rules"),
        (
            "[sources.x]\nsigned=false\nmessage_id='a'\nclient_id='b'\n[[sources.x.rules]]\n"
            "operation='o'\npriority='urgent'\n",
            "priority",
        ),
        ("[sources.X]\nsigned=false\n", "source name"),
        ("not toml [", "not TOML"),
    ],
)
def test_a_bad_rules_file_names_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(RulesError, match=says):
        parse_rules(text)


def test_signatures_verify_only_the_body_they_were_made_for() -> None:
    body = b'{"webhookId": "wh-1"}'
    header = sign(b"secret", body)
    assert verify(b"secret", body, header)
    assert verify(b"secret", body, header.removeprefix("sha256=").upper())
    assert not verify(b"secret", body + b" ", header)
    assert not verify(b"other", body, header)
    assert not verify(b"secret", body, None)
    assert not verify(b"", body, header)
