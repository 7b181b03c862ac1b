"""The command gateway over an in-memory projection and a recording sender: what it sends,
what it refuses at once, and with which message."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.gateway import Gateway, mount
from api.view import create_app
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas import commands as cmd
from schemas import events as ev
from schemas.catalog import load_catalog
from schemas.records import DeadLetter
from streams.errors import BrokerError
from streams.redrive import DeadLetterEntry

# The gateway names the caller as each command's actor; an open view's caller is anonymous.
ANON = "anonymous"


class Recorder:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[cmd.Command] = []
        self.error = error

    async def send(self, command: cmd.Command) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(command)


def _source() -> MemorySource:
    source = MemorySource()
    t = iter(range(1, 1000))

    def accept(task_id: str, **extra: Any) -> None:
        source.feed(
            ev.TaskAccepted(
                client_id="c1",
                occurred_at_ms=next(t),
                task_id=task_id,
                operation="tag_add",
                payload={"tag": "vip"},
                priority=4,
                max_retries=3,
                timeout_ms=1000,
                **extra,
            )
        )

    accept("t-queued")
    source.feed(
        ev.TaskQueued(
            client_id="c1", occurred_at_ms=next(t), task_id="t-queued", priority=4, attempt=1
        )
    )
    accept("t-done")
    source.feed(
        ev.TaskCompleted(
            client_id="c1", occurred_at_ms=next(t), task_id="t-done", operation="tag_add", attempt=1
        )
    )
    accept("t-review", requires_review=True)
    source.feed(ev.TaskPendingReview(client_id="c1", occurred_at_ms=next(t), task_id="t-review"))
    source.feed(
        ev.SessionRegistered(
            client_id="c9", occurred_at_ms=next(t), session_id="s/1", agent_id="a", max_concurrent=2
        )
    )
    source.flush()
    return source


def _client(app: FastAPI, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://view", headers=headers
    )


def _app(sender: Recorder, source: MemorySource | None = None, **kw: Any) -> FastAPI:
    return create_app(ProjectionReader(source or _source()), commands=sender, **kw)


async def test_submit_sends_the_command_and_answers_202_with_a_link() -> None:
    sender = Recorder()
    async with _client(_app(sender)) as client:
        r = await client.post(
            "/tasks",
            json={
                "client_id": "c1",
                "operation": "contact_create",
                "payload": {"name": "Ada"},
                "priority": "critical",
                "task_id": "new/1",
                "capabilities": ["crm", "crm"],
            },
        )
        assert r.status_code == 202, r.text
        assert r.json() == {
            "task_id": "new/1",
            "link": "/tasks/new/1",
            "command": "SubmitTask",
            "duplicate": False,
        }
        r = await client.post("/tasks", json={"client_id": "c1", "operation": "tag_add"})
        assert r.status_code == 202
        generated = r.json()["task_id"]
    first, second = sender.sent
    assert first == cmd.SubmitTask(
        client_id="c1",
        task_id="new/1",
        operation="contact_create",
        payload={"name": "Ada"},
        priority=1,
        capabilities=["crm"],
        actor=ANON,
    )
    assert isinstance(second, cmd.SubmitTask) and second.task_id == generated and generated


async def test_a_repeated_task_id_creates_nothing_and_a_different_spec_is_a_conflict() -> None:
    sender = Recorder()
    body = {
        "client_id": "c1",
        "operation": "tag_add",
        "payload": {"tag": "vip"},
        "task_id": "t-queued",
    }
    async with _client(_app(sender)) as client:
        r = await client.post("/tasks", json=body)
        assert r.status_code == 202
        assert r.json()["task_id"] == "t-queued" and r.json()["duplicate"] is True
        r = await client.post("/tasks", json={**body, "payload": {"tag": "other"}})
        assert r.status_code == 409
        assert "payload" in r.json()["detail"] and "t-queued" in r.json()["detail"]
        r = await client.post("/tasks", json={**body, "client_id": "c2"})
        assert r.status_code == 409 and "client_id" in r.json()["detail"]
    assert sender.sent == []


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"operation": "tag_add"}, 422, ["client_id", "required"]),
        ({"client_id": "c", "operation": "nope"}, 422, ["operation", "unknown operation 'nope'"]),
        ({"client_id": "c", "operation": "tag_add", "priority": 9}, 422, ["priority"]),
        ({"client_id": "c", "operation": "tag_add", "payload": [1]}, 422, ["payload"]),
        ({"client_id": "c", "operation": "tag_add", "color": "red"}, 422, ["color"]),
        ({"client_id": "", "operation": "tag_add"}, 422, ["client_id"]),
        (
            {"client_id": "c", "operation": "api_call", "payload": {"apiMethod": "GET"}},
            422,
            ["payload.apiEndpoint: required"],
        ),
        (
            {
                "client_id": "c",
                "operation": "api_call",
                "payload": {"apiEndpoint": "ftp://x", "authType": "bearer"},
            },
            422,
            ["payload.apiEndpoint", "http", "payload.bearerToken"],
        ),
        (
            {"client_id": "c", "operation": "tag_add", "payload": {"notifyOnComplete": True}},
            422,
            ["payload.notifyWebhookUrl: required when notify_on_complete"],
        ),
        (
            {
                "client_id": "c",
                "operation": "report_generation",
                "payload": {"reportType": "webhook_activity", "sendNotification": True},
            },
            422,
            ["payload.notifyWebhookUrl: required when sendNotification is true"],
        ),
        (
            {"client_id": "c", "operation": "tag_add", "payload": {"blob": "x" * 5000}},
            413,
            ["payload", "over the limit"],
        ),
    ],
)
async def test_invalid_submissions_name_the_field_and_send_nothing(
    body: dict[str, Any], status: int, words: list[str]
) -> None:
    await _refused("/tasks", body, _source(), status, words)


async def _refused(
    path: str, body: dict[str, Any], source: MemorySource, status: int, words: list[str]
) -> None:
    """POST ``body`` to a gateway with a 4 KiB payload limit: ``status``, a detail naming
    every one of ``words``, and nothing sent."""
    sender = Recorder()
    app = FastAPI()
    mount(
        app, Gateway(ProjectionReader(source), sender, catalog=_catalog(), max_payload_bytes=4096)
    )
    async with _client(app) as client:
        r = await client.post(path, json=body)
    assert r.status_code == status, r.text
    detail = str(r.json()["detail"])
    for word in words:
        assert word in detail, detail
    assert sender.sent == []


def _catalog() -> Any:
    catalog = load_catalog()
    assert "api_call" in catalog and "tag_add" in catalog
    return catalog


async def test_reminder_time_becomes_the_scheduled_start() -> None:
    sender = Recorder()
    async with _client(_app(sender)) as client:
        r = await client.post(
            "/tasks",
            json={
                "client_id": "c",
                "operation": "reminder",
                "payload": {
                    "reminderTime": "2030-01-01T00:00:00Z",
                    "reminderMessage": "hi",
                    "recipient": "ada",
                },
            },
        )
    assert r.status_code == 202, r.text
    (sent,) = sender.sent
    assert isinstance(sent, cmd.SubmitTask) and sent.scheduled_for_ms == 1_893_456_000_000


async def test_task_commands_take_the_client_from_the_read_side() -> None:
    sender = Recorder()
    async with _client(_app(sender)) as client:
        r = await client.post("/tasks/t-queued/cancel", json={"reason": "dup"})
        assert r.status_code == 202
        assert r.json() == {
            "task_id": "t-queued",
            "link": "/tasks/t-queued",
            "command": "CancelTask",
            "duplicate": False,
        }
        assert (await client.post("/tasks/t-queued/expedite")).status_code == 202
        assert (
            await client.post("/tasks/t-review/approve", json={"reviewer": "bo"})
        ).status_code == 202
        assert (await client.post("/tasks/t-review/reject")).status_code == 202
    assert sender.sent == [
        cmd.CancelTask(client_id="c1", task_id="t-queued", reason="dup", actor=ANON),
        cmd.ExpediteTask(client_id="c1", task_id="t-queued", actor=ANON),
        cmd.ApproveTask(client_id="c1", task_id="t-review", reviewer="bo", actor=ANON),
        cmd.RejectTask(client_id="c1", task_id="t-review", actor=ANON),
    ]


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/tasks/nope/cancel", 404, ["no task", "'nope'"]),
        ("/tasks/nope/approve", 404, ["no task"]),
        ("/tasks/nope/reject", 404, ["no task"]),
        ("/tasks/nope/expedite", 404, ["no task"]),
        ("/tasks/t-done/cancel", 409, ["already completed"]),
        ("/tasks/t-done/expedite", 409, ["already completed"]),
        ("/tasks/t-queued/approve", 409, ["does not require review"]),
        ("/tasks/t-queued/reject", 409, ["does not require review"]),
    ],
)
async def test_task_commands_the_read_side_refutes(
    path: str, status: int, words: list[str]
) -> None:
    sender = Recorder()
    async with _client(_app(sender)) as client:
        r = await client.post(path)
    assert r.status_code == status
    for word in words:
        assert word in r.json()["detail"]
    assert sender.sent == []


async def test_sessions_register_and_release() -> None:
    sender = Recorder()
    async with _client(_app(sender)) as client:
        r = await client.post(
            "/sessions",
            json={"client_id": "c9", "agent_id": "agent", "session_id": "s-2", "max_concurrent": 3},
        )
        assert r.status_code == 202
        assert r.json() == {
            "session_id": "s-2",
            "link": "/sessions/s-2",
            "command": "RegisterSession",
        }
        r = await client.post(
            "/sessions", json={"client_id": "c9", "agent_id": "a", "max_concurrent": 0}
        )
        assert r.status_code == 422 and "max_concurrent" in r.json()["detail"]
        r = await client.delete("/sessions/s/1", params={"reason": "done"})
        assert r.status_code == 202 and r.json()["command"] == "ReleaseSession"
        r = await client.delete("/sessions/unknown")
        assert r.status_code == 404 and "no session" in r.json()["detail"]
    assert sender.sent == [
        cmd.RegisterSession(
            client_id="c9", session_id="s-2", agent_id="agent", max_concurrent=3, actor=ANON
        ),
        cmd.ReleaseSession(client_id="c9", session_id="s/1", reason="done", actor=ANON),
    ]


async def test_same_auth_as_the_view_and_no_gateway_without_a_sender() -> None:
    sender = Recorder()
    async with _client(_app(sender, token="secret")) as client:
        r = await client.post("/tasks", json={"client_id": "c", "operation": "tag_add"})
        assert r.status_code == 401
    async with _client(_app(sender, token="secret"), token="secret") as client:
        r = await client.post("/tasks", json={"client_id": "c", "operation": "tag_add"})
        assert r.status_code == 202
    async with _client(create_app(ProjectionReader(_source()))) as client:
        assert (await client.post("/tasks", json={})).status_code == 405
        assert (await client.get("/tasks/t-done")).status_code == 200
    assert len(sender.sent) == 1


async def test_a_broker_failure_is_503_and_says_nothing_was_sent() -> None:
    sender = Recorder(BrokerError("could not send SubmitTask: timeout"))
    async with _client(_app(sender)) as client:
        r = await client.post("/tasks", json={"client_id": "c", "operation": "tag_add"})
    assert r.status_code == 503 and "not sent" in r.json()["detail"]


def _letter(task_id: str | None, *, offset: int, **extra: Any) -> DeadLetterEntry:
    letter = DeadLetter(reason="retries_exhausted", client_id="c1", task_id=task_id, **extra)
    return DeadLetterEntry(0, offset, letter)


async def test_redrive_endpoint_submits_once_and_reports_what_it_cannot_use() -> None:
    sender = Recorder()
    source = _source()
    entries = [
        _letter(
            "t-done",
            offset=0,
            operation="tag_add",
            submit={"client_id": "c1", "task_id": "t-done", "operation": "tag_add"},
        ),
        _letter(None, offset=1, raw=b"junk"),
    ]

    async def dead_letters() -> list[DeadLetterEntry]:
        return entries

    app = FastAPI()
    mount(
        app,
        Gateway(
            ProjectionReader(source),
            sender,
            catalog=load_catalog(),
            max_payload_bytes=4096,
            dead_letters=dead_letters,
        ),
    )
    async with _client(app) as client:
        r = await client.post("/dlq/redrive", json={"all": True})
        assert r.status_code == 202, r.text
        report = r.json()
        assert [i["new_task_id"] for i in report["redriven"]] == ["t-done.r1"]
        assert report["redriven"][0]["link"] == "/tasks/t-done.r1"
        assert len(report["not_redrivable"]) == 1 and report["not_redrivable"][0]["why"]
        r = await client.post("/dlq/redrive", json={"task_ids": ["nope"]})
        assert r.status_code == 404 and "nope" in r.json()["detail"]
        r = await client.post("/dlq/redrive", json={})
        assert r.status_code == 422 and "task_ids" in str(r.json()["detail"])
        r = await client.post("/dlq/redrive", json={"all": True, "reason": "x"})
        assert r.status_code == 422
    assert sender.sent == [
        cmd.SubmitTask(client_id="c1", task_id="t-done.r1", operation="tag_add", actor=ANON)
    ]


async def test_redrive_without_a_dead_letter_source_is_503() -> None:
    async with _client(_app(Recorder())) as client:
        r = await client.post("/dlq/redrive", json={"all": True})
    assert r.status_code == 503


def _job_source() -> MemorySource:
    source = _source()
    source.feed(
        ev.BatchJobAccepted(
            client_id="c1",
            occurred_at_ms=500,
            batch_job_id="job-1",
            operation="tag_add",
            parallelism=2,
            total=2,
            children=[
                ev.BatchJobChild(task_id="job-1.0", payload={"tag": "a"}),
                ev.BatchJobChild(task_id="job-1.1", payload={"tag": "b"}),
            ],
            priority=4,
            max_retries=3,
            timeout_ms=1000,
        )
    )
    source.flush()
    return source


async def test_batch_job_is_sent_as_one_command_with_a_link_to_follow_it() -> None:
    sender = Recorder()
    async with _client(_app(sender)) as client:
        r = await client.post(
            "/batch-jobs",
            json={
                "client_id": "c1",
                "operation": "tag_add",
                "batch_job_id": "job/2",
                "items": [{"payload": {"tag": "a"}}, {"task_id": "x", "payload": {"tag": "b"}}],
                "parallelism": 3,
                "priority": "low",
                "max_retries": 0,
            },
        )
        assert r.status_code == 202, r.text
        assert r.json() == {
            "batch_job_id": "job/2",
            "link": "/batch-jobs/job/2",
            "command": "SubmitBatchJob",
        }
        r = await client.post(
            "/batch-jobs",
            json={"client_id": "c1", "operation": "tag_add", "items": [{"payload": {}}]},
        )
        assert r.status_code == 202, r.text
        generated = r.json()["batch_job_id"]
    first, second = sender.sent
    assert first == cmd.SubmitBatchJob(
        client_id="c1",
        batch_job_id="job/2",
        operation="tag_add",
        items=[
            cmd.BatchJobItem(payload={"tag": "a"}),
            cmd.BatchJobItem(task_id="x", payload={"tag": "b"}),
        ],
        parallelism=3,
        priority=4,
        max_retries=0,
        actor=ANON,
    )
    assert isinstance(second, cmd.SubmitBatchJob) and second.batch_job_id == generated
    assert generated and second.parallelism == 1 and second.priority is None


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"client_id": "c1", "operation": "tag_add", "items": []}, 422, ["items"]),
        ({"client_id": "c1", "operation": "nope", "items": [{}]}, 422, ["unknown operation"]),
        (
            {"client_id": "c1", "operation": "tag_add", "items": [{}], "parallelism": 0},
            422,
            ["parallelism"],
        ),
        (
            {
                "client_id": "c1",
                "operation": "tag_add",
                "items": [{"task_id": "a"}, {"task_id": "a"}],
            },
            422,
            ["items[1].task_id", "twice"],
        ),
        (
            {
                "client_id": "c1",
                "operation": "api_call",
                "items": [
                    {"payload": {"apiEndpoint": "https://api.example/x", "method": "GET"}},
                    {"payload": {}},
                ],
            },
            422,
            ["items[1].payload.apiEndpoint"],
        ),
        (
            {
                "client_id": "c1",
                "operation": "tag_add",
                "items": [{"payload": {"blob": "x" * 5000}}],
            },
            413,
            ["items[0].payload", "over the limit"],
        ),
        (
            {"client_id": "c1", "operation": "tag_add", "items": [{}], "extra": 1},
            422,
            ["extra"],
        ),
        (
            # The read side knows job-1 with two items: a job of one item is another job.
            {"client_id": "c1", "operation": "tag_add", "batch_job_id": "job-1", "items": [{}]},
            409,
            ["job-1", "different specification"],
        ),
    ],
)
async def test_invalid_batch_jobs_name_the_field_and_send_nothing(
    body: dict[str, Any], status: int, words: list[str]
) -> None:
    await _refused("/batch-jobs", body, _job_source(), status, words)


async def test_a_repeated_batch_job_is_sent_for_the_processor_to_ignore() -> None:
    sender = Recorder()
    async with _client(_app(sender, _job_source())) as client:
        r = await client.post(
            "/batch-jobs",
            json={
                "client_id": "c1",
                "operation": "tag_add",
                "batch_job_id": "job-1",
                "items": [{"payload": {"tag": "a"}}, {"payload": {"tag": "b"}}],
                "parallelism": 2,
            },
        )
    assert r.status_code == 202, r.text
    assert [type(c).__name__ for c in sender.sent] == ["SubmitBatchJob"]


async def test_sessions_cleanup_sends_one_command_per_client_and_names_the_stale_sessions() -> None:
    sender = Recorder()
    async with _client(_app(sender)) as client:
        r = await client.post("/sessions/cleanup")
        assert r.status_code == 202, r.text
        # s/1 was last seen at the log's first milliseconds: long past the stale timeout
        assert r.json() == {
            "command": "CleanupSessions",
            "client_ids": ["c9"],
            "stale_session_ids": ["s/1"],
        }
        r = await client.post("/sessions/cleanup", json={"client_id": "c1"})
        assert r.status_code == 202 and r.json()["client_ids"] == ["c1"]
        assert r.json()["stale_session_ids"] == []
        r = await client.post("/sessions/cleanup", json={"client": "c1"})
        assert r.status_code == 422
    assert sender.sent == [
        cmd.CleanupSessions(client_id="c9", actor=ANON),
        cmd.CleanupSessions(client_id="c1", actor=ANON),
    ]
