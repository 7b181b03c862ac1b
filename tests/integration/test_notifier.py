"""Outcome notices on a real broker: the processor marks the outcome, the notifier part posts
it once to a local receiver, whatever the attempts before it (seed 001's notifyOnComplete /
notifyOnFailure, and a report's sendNotification, issue 19)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from schemas import events as ev
from schemas.records import Assignment
from streams.notifier import NotifierPart
from streams.settings import Settings
from tests.integration.distributor_harness import Reply, rig, submit
from tests.support.receiver import receiver

pytestmark = pytest.mark.integration

OP = "integration_sync"  # a pool operation: the user's own handler serves it
REPORT = {"report_type": "webhook_activity", "total": 2, "by_source": {"ghl": {"total": 2}}}


def script(a: Assignment) -> Reply:
    """ "flaky" fails its first two attempts; "doomed" always fails; "report" reports."""
    if a.task_id == "report":
        return Reply(output=REPORT)
    if a.task_id == "flaky" and a.attempt >= 3:
        return Reply(output={"attempt": a.attempt})
    return Reply(success=False, error=f"boom {a.attempt}")


async def test_one_notice_per_outcome_after_retries(
    make_settings: Callable[..., Settings],
) -> None:
    async with receiver() as hook:
        hook.script["/failed"] = [503]  # the notifier retries it
        async with rig(
            make_settings,
            script,
            retry_base_ms=50,
            max_retries=2,
            outbound_allow="127.0.0.1",
            notify_backoff_ms=20,
        ) as r:
            notifier = NotifierPart(r.settings)
            stop = asyncio.Event()
            running = asyncio.create_task(notifier.run(stop))
            try:
                await r.send(
                    submit(
                        "A",
                        "flaky",
                        OP,
                        payload={"notifyOnComplete": True, "notifyWebhookUrl": f"{hook.url}/done"},
                    ),
                    submit(
                        "A",
                        "doomed",
                        OP,
                        payload={
                            "notify_on_failure": True,
                            "notify_on_complete": True,
                            "notifyWebhookUrl": f"{hook.url}/failed",
                        },
                    ),
                    submit(
                        "A",
                        "report",
                        "report_generation",
                        payload={
                            "reportType": "webhook_activity",
                            "sendNotification": True,
                            "notifyWebhookUrl": f"{hook.url}/report",
                        },
                    ),
                )
                events = await r.wait(
                    lambda es: (
                        sum(isinstance(e, ev.TaskCompleted) for e in es) == 2
                        and any(isinstance(e, ev.TaskFailed) for e in es)
                    ),
                    timeout_s=20,
                )
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while not (
                    hook.at("/done") and len(hook.at("/failed")) == 2 and hook.at("/report")
                ):
                    assert loop.time() < deadline, hook.seen
                    hook.arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(hook.arrived.wait(), 0.5)
                await asyncio.sleep(0.3)  # nothing more comes
            finally:
                stop.set()
                await asyncio.wait_for(running, 10)

    attempts = [e for e in events if isinstance(e, ev.TaskAttemptFailed)]
    assert len(attempts) == 2 + 3  # flaky failed twice, doomed three times
    [done] = hook.at("/done")
    assert done.headers["Idempotency-Key"] == "flaky:completed"
    assert (done.body["event"], done.body["attempt"], done.body["output"]) == (
        "task.completed",
        3,
        {"attempt": 3},
    )
    first, again = hook.at("/failed")  # one notice, sent twice because of the 503
    assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"] == "doomed:failed"
    assert (again.body["outcome"], again.body["attempt"]) == ("failed", 3)
    [report] = hook.at("/report")  # the finished report, as the task's completed notice
    assert report.headers["Idempotency-Key"] == "report:completed"
    assert (report.body["operation"], report.body["output"]) == ("report_generation", REPORT)
    assert len(hook.seen) == 4
    assert notifier.sender.delivered == 3 and notifier.sender.given_up == 0
