"""Outcome notices (seed 001's ``notifyOnComplete`` / ``notifyOnFailure``): which outcome of a
task asks for one, and to where. Pure; the processor marks the outcome record with the target
(``streams.kafka.headers.NOTIFY_HEADER``) and the notifier part (``streams.notifier``) sends it.

A notice is about the task's final outcome, never an attempt: ``notify_on_complete`` (or
``notifyOnComplete``) asks for one when the task completes, ``notify_on_failure`` (or
``notifyOnFailure``) when it fails for good (outcome ``failed``, after its last retry). A task
that is cancelled, rejected by a reviewer or refused at submit was stopped on purpose: no
notice. The target is the payload's ``notifyWebhookUrl``; a task made from an inbound webhook
whose source names a ``reply_url`` has that as its ``notifyWebhookUrl`` unless the rule's
payload names another (``streams.webhooks.rules``). The flags work for every operation, built-in
or not: the notice is sent from the outcome, not by the handler. A ``report_generation`` task's
``sendNotification: true`` (seed 001) asks for both: the completed outcome's notice carries the
report as its ``output``, a failed one the error.

A finished task drops its payload but keeps these fields (``kept_on_finish``), so the outcome
record of a completed task, derived from the state after it completed, can still be marked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from schemas import events as ev
from schemas.task_configs import SEND_NOTIFICATION, notify_flags

__all__ = ["NOTICE_FIELDS", "kept_on_finish", "notice_target"]

NOTICE_FIELDS: Final = (
    "notify_on_complete",
    "notify_on_failure",
    "notifyOnComplete",
    "notifyOnFailure",
    "notifyWebhookUrl",
    SEND_NOTIFICATION,
)


def kept_on_finish(payload: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a finished task keeps of its payload: its notice fields, or ``None`` without any."""
    if not payload:
        return None
    kept = {name: payload[name] for name in NOTICE_FIELDS if name in payload}
    return kept or None


def notice_target(
    payload: Mapping[str, Any] | None, outcome: ev.TaskCompleted | ev.TaskFailed
) -> Any | None:
    """The ``notifyWebhookUrl`` (a URL, or a sealed value) the notice of ``outcome`` goes to,
    or ``None`` when the task did not ask for one (or named no target)."""
    if not payload:
        return None
    on_complete, on_failure = notify_flags(payload, outcome.operation)
    if isinstance(outcome, ev.TaskCompleted):
        wanted = on_complete
    else:
        wanted = on_failure and outcome.outcome == ev.OUTCOME_FAILED
    if not wanted:
        return None
    url = payload.get("notifyWebhookUrl")
    if isinstance(url, str) and url:
        return url
    if isinstance(url, Mapping):  # sealed (it carried credentials): opened by the notifier
        return dict(url)
    return None
