"""``POST /webhooks/{source}``: a sender's message becomes a task (seed 001, "webhook messages:
automatically parsed and converted to tasks").

The rules file (``TASKSTREAM_WEBHOOK_RULES_FILE``, format in ``streams.webhooks.rules``) says,
per source, how a message is signed, where its id and client id are, and which task it becomes.
A sender cannot send our bearer token, so these routes take none: the source's HMAC signature
over the raw body is the authentication (a source is unsigned only where its rules say
``signed = false``). Answers:

- ``202`` with the task link: submitted (or, ``duplicate: true``, already known: a redelivered
  message names the same task id, so it never creates a second task);
- ``200`` with ``ignored``: no rule of the source matches the message (not the sender's error,
  so it is not asked to retry);
- ``401`` for a missing or wrong signature, ``404`` for an unknown source (or no rules file),
  ``400`` for a body that is not a JSON object, ``422`` naming the field a rule needs or the
  task's config refuses, ``503`` when the source's secret is not in the environment.

Every message is counted by source and outcome (``taskstream_webhook_messages_total``;
``OUTCOMES``). ``GET /webhooks/activity`` serves the same counts as JSON, by source and outcome
since this view started (a service-wide figure: it needs a token for every client). The counts
live in this process: each view replica counts the messages it received. The tasks a message
became are in the read model: their ``submitted_by`` is ``webhook:<source>``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel
from starlette.requests import Request

from schemas.commands import SubmitTask
from streams.redrive import task_link
from streams.webhooks import (
    NoRuleMatches,
    WebhookMessageError,
    WebhookRules,
    load_rules,
    verify,
    webhook_actor,
)

from .access import Principal
from .gateway_context import Gateway
from .gateway_models import TaskAccepted, problem

__all__ = [
    "ACTIVITY_PATH",
    "OUTCOMES",
    "SourceActivity",
    "WebhookAccepted",
    "WebhookActivity",
    "WebhookIgnored",
    "Webhooks",
    "activity",
    "activity_router",
    "mount_webhooks",
    "router",
]

PATH_PREFIX = "/webhooks/"
ACTIVITY_PATH = "/webhooks/activity"
OUTCOMES = ("accepted", "duplicate", "ignored", "refused", "unauthorized", "unconfigured")
"""What became of a message; every count of ``Webhooks.counts`` is under one of these."""

router = APIRouter(tags=["webhooks"])
activity_router = APIRouter(tags=["webhooks"])


class WebhookAccepted(TaskAccepted):
    source: str
    message_id: str


class WebhookIgnored(BaseModel):
    source: str
    message_id: str | None = None
    ignored: str


class SourceActivity(BaseModel):
    total: int
    by_outcome: dict[str, int]


class WebhookActivity(BaseModel):
    """Messages this view received, by source and outcome, since it started."""

    since: str
    since_ms: int
    total: int
    by_outcome: dict[str, int]
    by_source: dict[str, SourceActivity]
    """Every configured source (zeros when it sent nothing) and every source counted."""


class Webhooks:
    """The rules and the gateway the webhook route acts on, and its message counts."""

    def __init__(
        self,
        rules: WebhookRules | None,
        gateway: Gateway | None,
        *,
        started_at_ms: int | None = None,
    ) -> None:
        self.rules = rules
        self.gateway = gateway
        self.counts: Counter[tuple[str, str]] = Counter()
        self.started_at_ms = started_at_ms if started_at_ms is not None else int(time.time() * 1000)

    @classmethod
    def from_file(cls, path: Path | None, gateway: Gateway | None) -> Webhooks:
        return cls(load_rules(path) if path is not None else None, gateway)


def mount_webhooks(app: FastAPI, webhooks: Webhooks) -> None:
    app.state.webhooks = webhooks
    app.include_router(router)


def _webhooks(request: Request) -> Webhooks:
    found = getattr(request.app.state, "webhooks", None)
    return found if isinstance(found, Webhooks) else Webhooks(None, None)


def principal_for(source: str) -> Principal:
    """Who a webhook's commands say sent them (the task row's ``submitted_by``, its history)."""
    return Principal(name=webhook_actor(source), clients=None, scope="write")


Source = Annotated[str, PathParam(min_length=1, max_length=64)]


@router.post(
    "/webhooks/{source}",
    status_code=202,
    response_model=WebhookAccepted,
    responses={
        200: {"model": WebhookIgnored, "description": "No rule matches: nothing to do"},
        400: {"description": "The body is not a JSON object"},
        401: {"description": "Missing or wrong signature"},
        404: {"description": "Unknown source"},
        422: {"description": "A field the rules need is missing, or the task config is invalid"},
        503: {"description": "The source's secret is not configured, or Kafka is unreachable"},
    },
    summary="Turn a sender's message into a task",
)
async def receive(
    source: Source, request: Request, hooks: Annotated[Webhooks, Depends(_webhooks)]
) -> Any:
    found = hooks.rules.source(source) if hooks.rules is not None else None
    if found is None or hooks.gateway is None:
        return problem(404, f"no webhook source {source!r} (TASKSTREAM_WEBHOOK_RULES_FILE)")
    body = await request.body()

    def counted(outcome: str, answer: Any) -> Any:
        hooks.counts[(source, outcome)] += 1
        return answer

    if found.signed:
        assert found.secret_env is not None
        secret = os.environ.get(found.secret_env, "")
        if not secret:
            return counted(
                "unconfigured",
                problem(503, f"webhook source {source!r}: {found.secret_env} is not set"),
            )
        if not verify(secret.encode(), body, request.headers.get(found.signature_header)):
            return counted(
                "unauthorized",
                problem(401, f"missing or wrong {found.signature_header} signature"),
            )
    try:
        message = json.loads(body)
    except ValueError:
        return counted("refused", problem(400, "the body is not JSON"))
    if not isinstance(message, dict):
        return counted("refused", problem(400, "the body must be a JSON object"))
    assert hooks.rules is not None
    try:
        task = hooks.rules.map(found, message)
    except NoRuleMatches as exc:
        ignored = WebhookIgnored(source=source, message_id=WebhookRules.message_id(found, message),
                                ignored=str(exc))  # fmt: skip
        return counted("ignored", JSONResponse(ignored.model_dump(), status_code=200))
    except WebhookMessageError as exc:
        return counted("refused", problem(422, str(exc)))
    gateway = hooks.gateway
    if task.operation not in gateway.catalog:
        return counted("refused", gateway.unknown_operation(task.operation))
    refused = gateway.payload_problem(task.operation, task.payload)
    if refused is not None:
        return counted("refused", refused)
    answer = WebhookAccepted(
        task_id=task.task_id,
        link=task_link(task.task_id),
        command="SubmitTask",
        source=source,
        message_id=task.message_id,
    )
    if gateway.reader.task(task.task_id) is not None:
        answer.duplicate = True
        return counted("duplicate", answer)
    try:
        command = SubmitTask(
            client_id=task.client_id,
            task_id=task.task_id,
            operation=task.operation,
            payload=task.payload,
            priority=task.priority,
        )
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        return counted("refused", problem(422, str(exc).splitlines()[0]))
    sent = await gateway.send(command, answer, principal_for(source))
    return counted("accepted" if sent is answer else "refused", sent)


def activity(webhooks: Webhooks) -> WebhookActivity:
    """The message counts of ``webhooks`` by source and outcome, every outcome listed."""
    configured = webhooks.rules.sources if webhooks.rules is not None else {}
    per_source = {name: dict.fromkeys(OUTCOMES, 0) for name in configured}
    overall = dict.fromkeys(OUTCOMES, 0)
    for (source, outcome), count in webhooks.counts.items():
        counts = per_source.setdefault(source, dict.fromkeys(OUTCOMES, 0))
        counts[outcome] = counts.get(outcome, 0) + count
        overall[outcome] = overall.get(outcome, 0) + count
    by_source = {
        name: SourceActivity(total=sum(counts.values()), by_outcome=counts)
        for name, counts in sorted(per_source.items())
    }
    since = datetime.fromtimestamp(webhooks.started_at_ms / 1000, UTC)
    return WebhookActivity(
        since=since.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        since_ms=webhooks.started_at_ms,
        total=sum(overall.values()),
        by_outcome=overall,
        by_source=by_source,
    )


@activity_router.get(
    ACTIVITY_PATH,
    response_model=WebhookActivity,
    summary="Inbound webhook messages by source and outcome since the view started",
)
async def activity_route(hooks: Annotated[Webhooks, Depends(_webhooks)]) -> WebhookActivity:
    return activity(hooks)


def render_counts(webhooks: Webhooks | None) -> bytes:
    """``taskstream_webhook_messages_total{source,outcome}`` in Prometheus text."""
    family = CounterMetricFamily(
        "taskstream_webhook_messages",
        "Inbound webhook messages by source and outcome",
        labels=["source", "outcome"],
    )
    for (source, outcome), count in sorted((webhooks.counts if webhooks else Counter()).items()):
        family.add_metric([source, outcome], count)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([family]))
    return bytes(generate_latest(registry))


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
