"""Notify on complete / on failure (seed 001), as a wrapper around any handler.

When the payload says ``notify_on_complete`` (or ``notifyOnComplete``) and the handler returns,
a ``task.completed`` document with the output is POSTed to ``notifyWebhookUrl``; when it says
``notify_on_failure`` and the handler raises, a ``task.attempt_failed`` document with the error is
POSTed and the error is re-raised. The executor cannot tell whether a failed attempt will be
retried, so every failed attempt notifies (the document carries ``attempt``); for one notice per
permanently failed task, consume ``task.failed``.

A notification that cannot be delivered is logged (URL masked) and does not change the task's
outcome: re-running the task because its notice failed would repeat its side effects.
Cancellation and timeouts (``CancelledError``) do not notify.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol, cast

from schemas.credentials import url_credentials
from schemas.masking import Masker
from schemas.task_configs import notify_flags
from streams.executor.context import AsyncHandler, Handler, SyncHandler, TaskContext
from streams.executor.errors import HandlerError
from streams.executor.jobs import is_async_handler

log = logging.getLogger(__name__)


class Notifier(Protocol):
    async def send(self, url: str, body: Mapping[str, Any], *, what: str = ...) -> int:
        """POST ``body`` to ``url``; raise ``HandlerError`` when it is not delivered."""
        ...


def _document(ctx: TaskContext, event: str, elapsed_ms: int) -> dict[str, Any]:
    return {
        "event": event,
        "task_id": ctx.task_id,
        "client_id": ctx.client_id,
        "operation": ctx.operation,
        "attempt": ctx.attempt,
        "session_id": ctx.session_id,
        "batch_id": ctx.batch_id,
        "execution_time_ms": elapsed_ms,
    }


async def _deliver(notifier: Notifier, ctx: TaskContext, body: Mapping[str, Any]) -> None:
    url = ctx.payload.get("notifyWebhookUrl")
    if not isinstance(url, str) or not url:
        log.warning(
            "task %s asks for a %s notice but has no notifyWebhookUrl", ctx.task_id, body["event"]
        )
        return
    try:
        await notifier.send(url, body, what=f"notify {body['event']}")
    except HandlerError as exc:
        log.warning("task %s: %s notice not delivered: %s", ctx.task_id, body["event"], exc)
    except Exception as exc:  # a user notifier's bug must not turn a success into a failure
        masked = Masker(url_credentials(url)).text(str(exc))
        log.warning(
            "task %s: %s notice to %s failed: %s: %s",
            ctx.task_id,
            body["event"],
            Masker(url_credentials(url)).url(url),
            type(exc).__name__,
            masked,
        )


def with_notifications(handler: Handler, notifier: Notifier) -> AsyncHandler:
    """``handler`` that also sends the payload's notify_on_complete / notify_on_failure notices.

    A sync handler runs in a worker thread, as the executor would run it.
    """
    is_async = is_async_handler(handler)

    async def notifying(ctx: TaskContext) -> Mapping[str, Any] | None:
        on_complete, on_failure = notify_flags(ctx.payload)
        started = time.monotonic()
        try:
            if is_async:
                result = await cast(AsyncHandler, handler)(ctx)
            else:
                result = await asyncio.to_thread(cast(SyncHandler, handler), ctx)
        except Exception as exc:
            if on_failure:
                body = _document(ctx, "task.attempt_failed", _elapsed_ms(started))
                body["error"] = str(exc) or type(exc).__name__
                await _deliver(notifier, ctx, body)
            raise
        if on_complete:
            body = _document(ctx, "task.completed", _elapsed_ms(started))
            body["output"] = dict(result) if isinstance(result, Mapping) else {}
            await _deliver(notifier, ctx, body)
        return result

    notifying.__qualname__ = f"with_notifications({getattr(handler, '__qualname__', handler)})"
    return notifying


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
