"""The command gateway end to end: HTTP -> task.commands -> the real processor -> task.events
-> the projector -> the same HTTP view. A scripted executor answers the assignments."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api import service
from api.projector import Projector
from api.view import create_app
from schemas import events as ev
from schemas.commands import SubmitTask
from schemas.records import Assignment
from streams.client import TaskstreamClient
from streams.kafka.process import free_loopback_port
from streams.redrive import Selection, redrive_log
from streams.settings import Settings

from .distributor_harness import Reply, Rig, layout, of_task, read_topic, rig, values

pytestmark = pytest.mark.integration

CLIENT = "acme"
OP = "conversation_send"  # needs a session, not batchable: one assignment per task
FAR = 4_102_444_800_000  # 2100-01-01: a scheduled task stays put during the test


@dataclass
class Stack:
    rig: Rig
    http: httpx.AsyncClient
    client: TaskstreamClient
    projector: Projector

    @property
    def settings(self) -> Settings:
        return self.rig.settings

    async def poll(
        self, path: str, check: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """GET ``path`` until it answers 200 with a body ``check`` accepts."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while True:
            r = await self.http.get(path)
            last = (r.status_code, r.text[:500])
            if r.status_code == 200 and check(r.json()):
                return dict(r.json())
            self.rig.processor.check()
            if time.monotonic() > deadline:
                raise AssertionError(f"GET {path} did not satisfy the check in time: {last}")
            await asyncio.sleep(0.1)

    async def post(self, path: str, body: Any = None, status: int = 202) -> dict[str, Any]:
        r = await self.http.post(path, json=body)
        assert r.status_code == status, r.text
        return dict(r.json())

    async def settled(self, marker: str) -> list[Any]:
        """Submit ``marker`` for CLIENT (same partition, so after every command sent before)
        and return the event log once its acceptance is in it."""
        await self.post("/tasks", {"client_id": CLIENT, "operation": OP, "task_id": marker})
        return await self.rig.wait(
            lambda events: any(isinstance(e, ev.TaskAccepted) for e in of_task(events, marker))
        )


@contextlib.asynccontextmanager
async def stack(
    make_settings: Callable[..., Settings], script: Callable[[Assignment], Reply | None]
) -> AsyncIterator[Stack]:
    async with rig(make_settings, script, partitions=2) as r:
        projector = Projector(r.settings, poll_ms=50)
        await projector.start()
        client = TaskstreamClient(r.settings)
        await client.start()
        app = create_app(projector.reader, commands=client, settings=r.settings)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://view")
        try:
            yield Stack(r, http, client, projector)
        finally:
            await http.aclose()
            await client.close()
            await projector.stop()


def accepted(events: list[Any], task_id: str) -> int:
    return sum(isinstance(e, ev.TaskAccepted) for e in of_task(events, task_id))


async def test_every_gateway_endpoint_reaches_the_processor_and_the_view(
    make_settings: Callable[..., Settings],
) -> None:
    def script(assignment: Assignment) -> Reply:
        return Reply(output={"sent": assignment.task_id})

    async with stack(make_settings, script) as s:
        # A session, registered through the gateway.
        answer = await s.post(
            "/sessions",
            {"client_id": CLIENT, "agent_id": "agent-1", "session_id": "s-1", "max_concurrent": 4},
        )
        assert answer == {
            "session_id": "s-1",
            "link": "/sessions/s-1",
            "command": "RegisterSession",
        }
        await s.poll("/sessions/s-1", lambda b: b["state"] == "active")

        # Submit; the executor's answer shows up as a completed task with its execution.
        body = {"client_id": CLIENT, "operation": OP, "task_id": "t-1", "payload": {"to": "+1"}}
        answer = await s.post("/tasks", body)
        assert answer["task_id"] == "t-1" and answer["link"] == "/tasks/t-1"
        task = await s.poll("/tasks/t-1", lambda b: b["state"] == "completed")
        (execution,) = task["executions"]
        assert execution["session_id"] == "s-1" and execution["status"] == "completed"
        assert execution["output"] == {"sent": "t-1"} and execution["finished_at_ms"]

        # Idempotency: a repeat once the view knows the task, and a repeat racing the first.
        again = await s.post("/tasks", body)
        assert again["task_id"] == "t-1" and again["duplicate"] is True
        race = {**body, "task_id": "t-2"}
        first, second = await asyncio.gather(s.post("/tasks", race), s.post("/tasks", race))
        assert first["task_id"] == second["task_id"] == "t-2"
        await s.poll("/tasks/t-2", lambda b: b["state"] == "completed")

        # Review: approve one, reject another.
        for task_id in ("t-rev", "t-rej"):
            await s.post("/tasks", {**body, "task_id": task_id, "requires_review": True})
            await s.poll(f"/tasks/{task_id}", lambda b: b["state"] == "pending_review")
        answer = await s.post("/tasks/t-rev/approve", {"reviewer": "bo"})
        assert answer == {
            "task_id": "t-rev",
            "link": "/tasks/t-rev",
            "command": "ApproveTask",
            "duplicate": False,
        }
        approved = await s.poll("/tasks/t-rev", lambda b: b["state"] == "completed")
        assert approved["reviewer"] == "bo"
        await s.post("/tasks/t-rej/reject", {"reviewer": "bo", "reason": "spam"})
        rejected = await s.poll("/tasks/t-rej", lambda b: b["state"] == "rejected")
        assert rejected["reason"] == "spam"

        # Expedite and cancel tasks that wait for a far start.
        for task_id in ("t-sched", "t-cancel"):
            await s.post(
                "/tasks",
                {**body, "operation": "tag_add", "task_id": task_id, "scheduled_for_ms": FAR},
            )
            await s.poll(f"/tasks/{task_id}", lambda b: b["state"] == "scheduled")
        await s.post("/tasks/t-sched/expedite")
        await s.poll("/tasks/t-sched", lambda b: b["priority_name"] == "critical")
        await s.post("/tasks/t-cancel/cancel", {"reason": "not needed"})
        cancelled = await s.poll("/tasks/t-cancel", lambda b: b["state"] == "cancelled")
        assert cancelled["reason"] == "not needed"
        r = await s.http.post("/tasks/t-cancel/cancel")
        assert r.status_code == 409 and "already cancelled" in r.json()["detail"]

        # Invalid configurations never reach the log; unknown ids are 404.
        r = await s.http.post(
            "/tasks",
            json={
                "client_id": CLIENT,
                "operation": "api_call",
                "task_id": "bad-1",
                "payload": {"apiEndpoint": "not a url", "authType": "bearer"},
            },
        )
        assert r.status_code == 422
        assert "payload.apiEndpoint" in r.json()["detail"]
        assert "payload.bearerToken" in r.json()["detail"]
        r = await s.http.post("/tasks/never-seen/cancel")
        assert r.status_code == 404

        # Release the session through the gateway.
        answer = (await s.http.delete("/sessions/s-1", params={"reason": "done"})).json()
        assert answer["command"] == "ReleaseSession"
        session = await s.poll("/sessions/s-1", lambda b: b["state"] == "released")
        assert session["end_reason"] == "done"
        assert (await s.http.delete("/sessions/s-404")).status_code == 404

        events = await s.settled("marker")
        assert accepted(events, "t-1") == 1
        assert accepted(events, "t-2") == 1
        assert of_task(events, "bad-1") == []
        assert not [e for e in of_task(events, "t-2") if isinstance(e, ev.TaskRejected)]


async def test_a_dead_lettered_task_redriven_completes_and_a_second_redrive_adds_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    def script(assignment: Assignment) -> Reply:
        if assignment.task_id == "doomed":
            return Reply(success=False, error="remote said no")
        return Reply(output={"ok": assignment.task_id})

    async with stack(make_settings, script) as s:
        await s.post("/sessions", {"client_id": CLIENT, "agent_id": "a", "session_id": "s-1"})
        await s.poll("/sessions/s-1", lambda b: b["state"] == "active")
        await s.post(
            "/tasks",
            {
                "client_id": CLIENT,
                "operation": OP,
                "task_id": "doomed",
                "payload": {"to": "+1"},
                "max_retries": 0,
            },
        )
        dead = await s.poll("/tasks/doomed", lambda b: b["dead_lettered"])
        assert dead["state"] == "failed"
        assert [(x["status"], x["error"]) for x in dead["executions"]] == [
            ("failed", "remote said no")
        ]
        await s.rig.commands.send_raw(b"\xc3\x01 not a command", key=CLIENT)

        # The dead letter reaches task.dlq with the processor's events; retry until it is read.
        deadline = time.monotonic() + 30
        while True:
            r = await s.http.post("/dlq/redrive", json={"task_ids": ["doomed"]})
            if r.status_code != 404 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert r.status_code == 202, r.text
        report = r.json()
        assert [(i["task_id"], i["new_task_id"], i["client_id"]) for i in report["redriven"]] == [
            ("doomed", "doomed.r1", CLIENT)
        ]
        redriven = await s.poll("/tasks/doomed.r1", lambda b: b["state"] == "completed")
        assert redriven["output"] == {"ok": "doomed.r1"}
        assert redriven["payload"] == {"to": "+1"} and redriven["max_retries"] == 0

        # Again, through the view (which knows doomed.r1) and through the CLI's function
        # (which sends the identical submit: the processor ignores it).
        deadline = time.monotonic() + 30
        while True:
            report = await s.post("/dlq/redrive", {"all": True})
            if report["not_redrivable"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert report["redriven"] == []
        assert [i["new_task_id"] for i in report["already_redriven"]] == ["doomed.r1"]
        (raw,) = report["not_redrivable"]
        assert raw["task_id"] is None and raw["why"]
        cli = await redrive_log(s.settings, Selection(task_ids=["doomed"]), s.client)
        assert [i.new_task_id for i in cli.redriven] == ["doomed.r1"]

        events = await s.settled("marker")
        assert accepted(events, "doomed.r1") == 1
        assert of_task(events, "doomed.r2") == []
        completed = [e for e in of_task(events, "doomed.r1") if isinstance(e, ev.TaskCompleted)]
        assert len(completed) == 1
        # The view may not have folded the marker yet: wait for it, then count exactly.
        status = await s.poll("/status", lambda b: b["tasks_total"] >= 3)
        assert status["tasks_total"] == 3  # doomed, doomed.r1, marker


async def test_the_service_serves_the_gateway_with_the_views_auth(
    make_settings: Callable[..., Settings],
) -> None:
    settings = await layout(
        make_settings, partitions=2, http_port=free_loopback_port(), http_token="s3cret"
    )
    running = asyncio.create_task(service.run(settings))
    body = {"client_id": CLIENT, "operation": OP, "task_id": "via-service"}
    try:
        base = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient(base_url=base) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    r = await http.post("/tasks", json=body)
                    break
                except httpx.TransportError:
                    assert not running.done() and time.monotonic() < deadline
                    await asyncio.sleep(0.05)
            assert r.status_code == 401
            r = await http.post("/tasks", json=body, headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 202, r.text
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    sent = values(await read_topic(settings, "commands"), SubmitTask)
    assert [c.task_id for c in sent] == ["via-service"]
