"""A valid config for every seed-001 task type (the decider checks them, so a test that submits
one of these operations without a payload of its own uses these)."""

from __future__ import annotations

from typing import Any

__all__ = ["VALID", "valid_payload"]

VALID: dict[str, dict[str, Any]] = {
    "api_call": {"apiEndpoint": "https://api.example.com/v1", "apiMethod": "POST"},
    "ghl_action": {"ghlAction": "add_contact", "email": "john@example.com", "firstName": "J"},
    "notification": {"recipient": "owner", "message": "hello"},
    "reminder": {"reminderTime": "2024-12-15T10:00:00Z", "reminderMessage": "follow up"},
    "report_generation": {"reportType": "task_summary"},
    "browser_automation": {
        "automationSteps": [
            {"type": "navigate", "config": {"url": "https://example.com"}},
            {"type": "click", "config": {"selector": "#submit-button"}},
            {"type": "extract", "config": {"instruction": "the title"}},
        ]
    },
    "data_extraction": {
        "automationSteps": [
            {"type": "navigate", "config": {"url": "https://example.com/data"}},
            {"type": "extract", "config": {"instruction": "all product names and prices"}},
        ]
    },
}


def valid_payload(operation: str) -> dict[str, Any]:
    """A copy of ``operation``'s valid example; ``{}`` for operations that take any payload."""
    import copy

    return copy.deepcopy(VALID.get(operation, {}))
