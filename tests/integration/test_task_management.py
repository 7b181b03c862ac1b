"""Task management end to end on the suite's broker (issue 15, items 1-3): the real processor,
the projector with the HTTP view and gateway, the SDK and the CLI. A raw producer's invalid config is
refused naming the field; a reminder from the SDK starts at its time; an edit before start takes
effect (attachments too, issue 19) and one after start is 409; an archived task leaves the
default listing and keeps its history; run starts a scheduled task now; a task waits for input
and resumes with the answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import events as ev
from schemas import management_events as mev
from schemas.commands import SubmitTask
from streams.cli.main import build_parser
from streams.client import TaskstreamClient
from streams.executor import Defer, Executor, NeedsInput, TaskContext
from streams.kafka.process import free_loopback_port
from streams.settings import Settings
from tests.integration.distributor_harness import (
    InProcessProcessor,
    layout,
    read_events,
    wait_for_events,
)
from tests.integration.test_workflows import poll, view

pytestmark = pytest.mark.integration

CLIENT = "mgmt"
SESSION_OP = "workflow_trigger"  # needs a session, not batchable
POOL_OP = "integration_sync"  # shared pool: no session needed
FAR = 4_102_444_800_000  # 2100-01-01
ATTACHMENT = {
    "url": "https://files.example.com/brief.pdf",
    "name": "brief.pdf",
    "size_bytes": 1234,
    "content_type": "application/pdf",
}
LINK = {
    "url": "https://example.com/notes",
    "name": "notes",
    "size_bytes": None,
    "content_type": None,
}
CLI_ATTACH = "https://example.com/q3.pdf,name=Q3,size=10,type=application/pdf"


def of(events: list[Any], kind: type[Any], task_id: str) -> list[Any]:
    return [e for e in events if isinstance(e, kind) and getattr(e, "task_id", None) == task_id]


async def test_raw_config_check_and_a_reminder_through_the_sdk(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await layout(make_settings)
    processor = await InProcessProcessor(settings).start()
    try:
        async with TaskstreamClient(settings) as client:
            # Raw: the command is produced as is, skipping the submission door.
            await client.send(
                SubmitTask(
                    client_id=CLIENT, task_id="raw-bad", operation="api_call", payload={"x": 1}
                )
            )
            due_ms = (int(time.time()) + 3) * 1000
            when = datetime.fromtimestamp(due_ms / 1000, UTC).isoformat()
            await client.submit(
                CLIENT,
                "reminder",
                {"reminderTime": when, "reminderMessage": "stand-up"},
                task_id="remind-1",
            )
            events = await wait_for_events(
                settings,
                lambda es: (
                    bool(of(es, ev.TaskRejected, "raw-bad"))
                    and bool(of(es, ev.TaskQueued, "remind-1"))
                ),
                timeout_s=60,
            )
    finally:
        await processor.stop()
    (rejected,) = of(events, ev.TaskRejected, "raw-bad")
    assert rejected.reason.startswith("payload.apiEndpoint: required"), rejected.reason
    (accepted,) = of(events, ev.TaskAccepted, "remind-1")
    assert accepted.scheduled_for_ms == due_ms
    (queued,) = of(events, ev.TaskQueued, "remind-1")
    assert queued.reason == "scheduled" and queued.occurred_at_ms >= due_ms


async def test_edit_archive_run_and_input_from_the_view_and_the_sdk(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await layout(make_settings, http_port=free_loopback_port())
    processor = await InProcessProcessor(settings).start()
    try:
        async with view(settings) as http, TaskstreamClient(settings) as sdk:
            # Not started (scheduled far ahead): the edit takes effect.
            for task_id in ("later", "gone"):
                r = await http.post(
                    "/tasks",
                    json={
                        "client_id": CLIENT,
                        "task_id": task_id,
                        "operation": "contact_create",
                        "scheduled_for_ms": FAR,
                        "title": f"Call {task_id} back",
                        "tags": ["sales"],
                        "attachments": [ATTACHMENT],
                    },
                )
                assert r.status_code == 202, r.text
            shown = await poll(http, "/tasks/later", lambda t: t["state"] == "scheduled")
            assert shown["attachments"] == [ATTACHMENT]
            r = await http.put(
                "/tasks/later",
                json={"priority": "low", "tags": ["sales", "vip"], "attachments": [LINK]},
            )
            assert r.status_code == 202, r.text
            edited = await poll(http, "/tasks/later", lambda t: t["tags"] == ["sales", "vip"])
            assert edited["priority"] == 4 and edited["state"] == "scheduled"
            assert edited["attachments"] == [LINK]
            bad = {"attachments": [{"url": "ftp://x.example/a", "name": "a"}]}
            r = await http.put("/tasks/later", json=bad)
            assert r.status_code == 422 and "attachments[0].url" in r.json()["detail"]
            listed = (await http.get("/tasks?tag=vip&title=LATER")).json()["items"]
            assert [t["task_id"] for t in listed] == ["later"]

            # The CLI edits too.
            parser = build_parser()
            args = parser.parse_args(
                ["edit", "later", "--client", CLIENT, "--tag", "cli", "--attach", CLI_ATTACH]
            )
            assert await asyncio.to_thread(args.handler, args, settings) == 0
            cli = await poll(http, "/tasks/later", lambda t: t["tags"] == ["cli"])
            assert cli["attachments"] == [
                {"url": "https://example.com/q3.pdf", "name": "Q3", "size_bytes": 10,
                 "content_type": "application/pdf"}
            ]  # fmt: skip

            # Run now: the scheduled task is queued at once.
            assert (await http.post("/tasks/later/run")).status_code == 202
            await poll(http, "/tasks/later", lambda t: t["state"] in ("queued", "batched"))

            # Archive: gone from the default listing, shown with include_archived, history kept.
            await sdk.archive(CLIENT, "gone", reason="duplicate")
            await poll(http, "/tasks/gone", lambda t: t["archived"])
            default = (await http.get(f"/tasks?client_id={CLIENT}")).json()["items"]
            every = (await http.get(f"/tasks?client_id={CLIENT}&include_archived=true")).json()
            assert "gone" not in {t["task_id"] for t in default}
            assert "gone" in {t["task_id"] for t in every["items"]}
            gone = (await http.get("/tasks/gone")).json()
            kinds = [h["type"] for h in gone["history"]]
            assert kinds[0] == "task.accepted" and kinds[-2:] == ["task.cancelled", "task.archived"]

            # Started (assigned to a session): the edit is 409.
            await sdk.register_session(CLIENT, "s1", "agent-1", max_concurrent=2)
            await sdk.submit(CLIENT, SESSION_OP, {"q": 1}, task_id="ask")
            row = await poll(http, "/tasks/ask", lambda t: t["state"] == "assigned")
            r = await http.put("/tasks/ask", json={"priority": 1})
            assert r.status_code == 409 and "started" in r.json()["detail"], r.text

            # People in the loop: the executor asks, a person answers, a new attempt runs.
            await sdk.request_input(CLIENT, "ask", row["fencing_token"], "Which list?")
            waiting = await poll(http, "/tasks/ask", lambda t: t["state"] == "waiting_input")
            assert waiting["prompt"] == "Which list?"
            r = await http.post("/tasks/ask/input", json={"input": {"list": "vip"}})
            assert r.status_code == 202, r.text
            resumed = await poll(
                http, "/tasks/ask", lambda t: t["state"] == "assigned" and t["attempt"] == 2
            )
            assert resumed["payload"] == {"q": 1, "input": {"list": "vip"}}
            assert resumed["fencing_token"] > row["fencing_token"]
    finally:
        await processor.stop()


async def test_an_executor_handler_asks_for_input_and_defers_by_raising(
    make_settings: Callable[..., Settings],
) -> None:
    """``NeedsInput`` and ``Defer`` raised by a real executor's handler: the task waits for a
    person, resumes with the answer, is put off to a time and then completes."""
    settings = await layout(make_settings, http_port=free_loopback_port())
    processor = await InProcessProcessor(settings).start()
    deferred_once: set[str] = set()

    async def handler(ctx: TaskContext) -> dict[str, Any]:
        answer = ctx.payload.get("input")
        if answer is None:
            raise NeedsInput("Which list?")
        if ctx.task_id not in deferred_once:
            deferred_once.add(ctx.task_id)
            raise Defer(int(time.time() * 1000) + 1500, reason="after the meeting")
        return {"list": answer["list"]}

    worker = Executor(settings, handlers={POOL_OP: handler}, pool=True, concurrency=2)
    try:
        await worker.start()
        async with view(settings) as http, TaskstreamClient(settings) as sdk:
            await sdk.submit(CLIENT, POOL_OP, {"q": 1}, task_id="human")
            waiting = await poll(http, "/tasks/human", lambda t: t["state"] == "waiting_input")
            assert waiting["prompt"] == "Which list?"
            await sdk.provide_input(CLIENT, "human", {"list": "vip"})
            await poll(http, "/tasks/human", lambda t: t["state"] == "deferred")
            done = await poll(http, "/tasks/human", lambda t: t["state"] == "completed")
            assert done["output"] == {"list": "vip"}
            events = await wait_for_events(
                settings, lambda es: bool(of(es, ev.TaskCompleted, "human")), timeout_s=30
            )
    finally:
        await worker.stop()
        await processor.stop()
    (asked,) = of(events, mev.TaskWaitingInput, "human")
    assert asked.prompt == "Which list?"
    (put_off,) = of(events, mev.TaskDeferred, "human")
    assert put_off.reason == "after the meeting"
    assert not of(events, ev.TaskAttemptFailed, "human")  # neither counted as a failure


async def test_every_management_command_from_each_door(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    """The success paths the other tests leave out: edit and run now from the SDK, run now,
    archive and answer from the CLI, archive from HTTP, templates from HTTP and the CLI."""
    settings = await layout(make_settings, http_port=free_loopback_port())
    processor = await InProcessProcessor(settings).start()
    parser = build_parser()

    async def cli(*argv: str) -> None:
        args = parser.parse_args(list(argv))
        assert await asyncio.to_thread(args.handler, args, settings) == 0, argv

    try:
        async with view(settings) as http, TaskstreamClient(settings) as sdk:
            for task_id in ("d-sdk", "d-cli"):
                await sdk.submit(
                    CLIENT, "contact_create", {}, task_id=task_id, scheduled_for_ms=FAR
                )
                await poll(http, f"/tasks/{task_id}", lambda t: t["state"] == "scheduled")
            await sdk.update_task(CLIENT, "d-sdk", title="edited by the sdk", tags=["sdk"])
            row = await poll(http, "/tasks/d-sdk", lambda t: t["tags"] == ["sdk"])
            assert row["title"] == "edited by the sdk"
            await sdk.run_now(CLIENT, "d-sdk")
            await cli("run-now", "d-cli")
            for task_id in ("d-sdk", "d-cli"):
                await poll(http, f"/tasks/{task_id}", lambda t: t["state"] != "scheduled")

            assert (await http.delete("/tasks/d-sdk", params={"reason": "http"})).status_code == 202
            await cli("archive", "d-cli", "--reason", "shell")
            for task_id in ("d-sdk", "d-cli"):
                await poll(http, f"/tasks/{task_id}", lambda t: t["archived"])

            await sdk.register_session(CLIENT, "s-doors", "agent-doors", max_concurrent=1)
            await sdk.submit(CLIENT, SESSION_OP, {"q": 2}, task_id="d-ask")
            row = await poll(http, "/tasks/d-ask", lambda t: t["state"] == "assigned")
            await sdk.request_input(CLIENT, "d-ask", row["fencing_token"], "Which one?")
            await poll(http, "/tasks/d-ask", lambda t: t["state"] == "waiting_input")
            await cli("answer", "d-ask", "--input", '{"pick": "b"}')
            row = await poll(http, "/tasks/d-ask", lambda t: t["attempt"] == 2)
            assert row["payload"]["input"] == {"pick": "b"}

            r = await http.post(
                "/templates",
                json={"client_id": CLIENT, "name": "t-http", "task": {"priority": 2}},
            )
            assert r.status_code == 202, r.text
            await cli("template", "define", "t-cli", "--client", CLIENT, "--priority", "3")
            listed = await poll(
                http, f"/templates?client_id={CLIENT}", lambda b: len(b["items"]) == 2
            )
            await cli("template", "list", "--client", CLIENT)
            r = await http.delete("/templates/t-http", params={"client_id": CLIENT})
            assert r.status_code == 202, r.text
            await cli("template", "delete", "t-cli", "--client", CLIENT)
            await poll(http, f"/templates?client_id={CLIENT}", lambda b: b["items"] == [])
    finally:
        await processor.stop()
    assert sorted(t["name"] for t in listed["items"]) == ["t-cli", "t-http"]
    out = capsys.readouterr().out
    assert "t-cli" in out and "t-http" in out
    events = [r.value for r in await read_events(settings)]
    archived = [e for e in events if isinstance(e, mev.TaskArchived)]
    assert sorted((e.task_id, e.reason) for e in archived) == [
        ("d-cli", "shell"),
        ("d-sdk", "http"),
    ]
    ran = {e.task_id for e in events if isinstance(e, mev.TaskRunRequested)}
    assert ran == {"d-sdk", "d-cli"}
