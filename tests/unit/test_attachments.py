"""Task attachments (issue 19): references to files on a task, through the routes, the SDK and
the CLI a user runs, the decider's rules for a raw producer, and records of older writers.

The route tests run the whole loop in memory: the gateway's command goes through the decider
(``tests.support.gwt.Harness``) and its events through the read model the view answers from.
"""

from __future__ import annotations

import argparse
from typing import Any

import httpx
import pytest

from api.view import create_app
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas import commands as cmd
from schemas import events as ev
from schemas import management_events as mev
from schemas.codec import CODEC
from streams.cli import args as conv
from streams.client import TaskstreamClient
from streams.domain.attachments import MAX_ATTACHMENTS, attachment_problems
from streams.errors import InvalidCommandError
from streams.settings import Settings
from tests.support.codec import schema_file, write_with
from tests.support.gwt import Harness, of, register

PDF = {
    "url": "https://files.example.com/contracts/acme.pdf",
    "name": "contract.pdf",
    "size_bytes": 482_113,
    "content_type": "application/pdf",
}
LINK = {
    "url": "http://example.com/brief",
    "name": "brief",
    "size_bytes": None,
    "content_type": None,
}


class Loop:
    """A command sender that decides each command and folds its events into the read model."""

    def __init__(self) -> None:
        self.harness = Harness()
        self.source = MemorySource()
        self.sent: list[cmd.Command] = []
        self.events: list[ev.Event] = []

    async def send(self, command: cmd.Command) -> None:
        self.sent.append(command)
        self.events = self.harness.do(command)
        for event in self.events:
            self.source.feed(event)
        self.source.flush()


def _client(loop: Loop) -> httpx.AsyncClient:
    app = create_app(ProjectionReader(loop.source), commands=loop)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://view")


async def _submit(client: httpx.AsyncClient, task_id: str, **extra: Any) -> httpx.Response:
    body = {"client_id": "c1", "operation": "workflow_trigger", "task_id": task_id, **extra}
    return await client.post("/tasks", json={"payload": {"email": "a@example.com"}, **body})


# -- through the HTTP view -------------------------------------------------------------------


async def test_a_submit_with_attachments_lists_them_on_the_task() -> None:
    loop = Loop()
    async with _client(loop) as client:
        r = await _submit(client, "t1", attachments=[PDF, {"url": LINK["url"], "name": "brief"}])
        assert r.status_code == 202, r.text
        task = (await client.get("/tasks/t1")).json()
    assert task["state"] == "queued"
    assert task["attachments"] == [PDF, LINK]
    (accepted,) = of(loop.events, ev.TaskAccepted)
    assert [a.name for a in accepted.attachments] == ["contract.pdf", "brief"]


async def test_a_task_without_attachments_shows_an_empty_list() -> None:
    loop = Loop()
    async with _client(loop) as client:
        assert (await _submit(client, "t1")).status_code == 202
        assert (await client.get("/tasks/t1")).json()["attachments"] == []


async def test_attachments_are_edited_before_the_task_starts() -> None:
    loop = Loop()
    async with _client(loop) as client:
        await _submit(client, "t1", attachments=[PDF])
        r = await client.put("/tasks/t1", json={"attachments": [LINK]})
        assert r.status_code == 202, r.text
        (updated,) = of(loop.events, mev.TaskUpdated)
        assert updated.changed == ["attachments"]
        task = (await client.get("/tasks/t1")).json()
        assert task["attachments"] == [LINK]
        assert task["history"][-2]["type"] == "task.updated"
        assert task["history"][-2]["detail"] == "attachments"
        # Other edits leave them alone; an empty list removes them.
        await client.put("/tasks/t1", json={"title": "renamed"})
        assert (await client.get("/tasks/t1")).json()["attachments"] == [LINK]
        await client.put("/tasks/t1", json={"attachments": []})
        assert (await client.get("/tasks/t1")).json()["attachments"] == []


async def test_attachments_cannot_be_edited_once_the_task_started() -> None:
    loop = Loop()
    async with _client(loop) as client:
        await _submit(client, "t1", attachments=[PDF])
        await loop.send(register("s1", client="c1"))
        assert (await client.get("/tasks/t1")).json()["state"] == "assigned"
        r = await client.put("/tasks/t1", json={"attachments": [LINK]})
        assert r.status_code == 409
        assert "it has started" in r.json()["detail"]
        assert (await client.get("/tasks/t1")).json()["attachments"] == [PDF]


@pytest.mark.parametrize(
    ("attachment", "message"),
    [
        ({"url": "ftp://example.com/a", "name": "a"}, "attachments[0].url: must be an http or https URL"),
        ({"url": "https://user:secret@example.com/a", "name": "a"}, "attachments[0].url: must not carry a user name or password"),
        ({"url": "https:///a", "name": "a"}, "attachments[0].url: must name a host"),
        ({"url": "https://example.com/a", "name": ""}, "attachments[0].name: must not be empty"),
        ({"url": "https://example.com/a", "name": "n" * 256}, "attachments[0].name: longer than 255"),
        ({"url": "https://example.com/a", "name": "a", "size_bytes": -1}, "attachments[0].size_bytes: must be >= 0"),
        ({"url": "https://example.com/a", "name": "a", "content_type": "pdf"}, "attachments[0].content_type: must be a media type"),
        ({"url": "https://example.com/a"}, "name"),
        ({"url": "https://example.com/a", "name": "a", "colour": "red"}, "colour"),
    ],
)  # fmt: skip
async def test_an_invalid_attachment_is_a_422_naming_the_field(
    attachment: dict[str, Any], message: str
) -> None:
    loop = Loop()
    async with _client(loop) as client:
        r = await _submit(client, "t1", attachments=[attachment])
        assert r.status_code == 422 and message in r.json()["detail"], r.text
        assert loop.sent == []
        await _submit(client, "t2")
        r = await client.put("/tasks/t2", json={"attachments": [attachment]})
        assert r.status_code == 422 and message in r.json()["detail"], r.text
        assert len(loop.sent) == 1


async def test_more_than_twenty_attachments_are_refused() -> None:
    many = [{"url": f"https://example.com/{i}", "name": str(i)} for i in range(MAX_ATTACHMENTS + 1)]
    loop = Loop()
    async with _client(loop) as client:
        r = await _submit(client, "t1", attachments=many)
        assert r.status_code == 422
        assert r.json()["detail"] == "attachments: more than 20 attachments (21)"
        r = await _submit(client, "t1", attachments=many[:MAX_ATTACHMENTS])
        assert r.status_code == 202
        assert len((await client.get("/tasks/t1")).json()["attachments"]) == MAX_ATTACHMENTS


async def test_a_signed_link_shows_without_its_token() -> None:
    loop = Loop()
    signed = {"url": "https://files.example.com/a.pdf?token=s3cr3t&v=2", "name": "a.pdf"}
    async with _client(loop) as client:
        await _submit(client, "t1", attachments=[signed])
        shown = (await client.get("/tasks/t1")).json()["attachments"][0]["url"]
    assert "s3cr3t" not in shown and shown.startswith("https://files.example.com/a.pdf?")


# -- the decider, for producers that skip the doors --------------------------------------------


def _raw_submit(task_id: str, *attachments: cmd.TaskAttachment) -> cmd.SubmitTask:
    return cmd.SubmitTask(
        client_id="c1",
        task_id=task_id,
        operation="workflow_trigger",
        payload={"email": "a@example.com"},
        attachments=list(attachments),
    )


def test_a_raw_submit_with_a_bad_attachment_is_rejected_with_the_reason() -> None:
    h = Harness()
    bad = cmd.TaskAttachment(url="javascript:alert(1)", name="x")
    events = h.do(_raw_submit("t1", bad))
    (rejected,) = of(events, ev.TaskRejected)
    assert rejected.reason.startswith("attachments[0].url: must be an http or https URL")
    assert of(events, ev.TaskAccepted) == []


def test_a_raw_update_is_checked_and_refused_after_start() -> None:
    h = Harness().given(_raw_submit("t1"))
    bad = cmd.UpdateTask(
        client_id="c1",
        task_id="t1",
        changed=["attachments"],
        attachments=[cmd.TaskAttachment(url="https://example.com/a", name="a", size_bytes=-5)],
    )
    (refused,) = h.do(bad)
    assert isinstance(refused, ev.TaskRejected) and refused.command == "UpdateTask"
    assert refused.reason == "attachments[0].size_bytes: must be >= 0, not -5"
    good = bad.model_copy(update={"attachments": [cmd.TaskAttachment(**PDF)]})
    assert of(h.do(good), mev.TaskUpdated)[0].attachments == [cmd.TaskAttachment(**PDF)]
    h.do(register("s1", client="c1"))
    (refused,) = h.do(good)
    assert isinstance(refused, ev.TaskRejected) and "already started" in refused.reason


def test_a_resubmit_with_the_same_attachments_is_a_redelivery_and_other_ones_conflict() -> None:
    h = Harness().given(_raw_submit("t1", cmd.TaskAttachment(**PDF)))
    assert h.do(_raw_submit("t1", cmd.TaskAttachment(**PDF))) == []
    (rejected,) = h.do(_raw_submit("t1", cmd.TaskAttachment(**LINK)))
    assert isinstance(rejected, ev.TaskRejected)
    assert "different specification" in rejected.reason


def test_the_rules_report_every_attachment_with_its_index() -> None:
    problems = attachment_problems(
        [
            cmd.TaskAttachment(**PDF),
            cmd.TaskAttachment(url="https://example.com/a b", name="a\nb"),
        ]
    )
    assert problems == [
        "attachments[1].url: must not contain spaces or control characters",
        "attachments[1].name: control characters (line breaks, NUL, ...) are not allowed",
    ]


# -- records of older writers ----------------------------------------------------------------


def test_a_submit_of_the_previous_schema_decodes_without_attachments() -> None:
    v4 = schema_file("SubmitTask", 4)
    assert all(f["name"] != "attachments" for f in v4["fields"])
    record = cmd.SubmitTask(client_id="c1", task_id="t1", operation="contact_create", tags=["x"])
    dumped = {k: v for k, v in _datum(record).items() if k != "attachments"}
    decoded = CODEC.decode(write_with(v4, dumped))
    assert decoded == record and isinstance(decoded, cmd.SubmitTask)
    assert decoded.attachments == []


def test_events_of_the_previous_schemas_fold_without_attachments() -> None:
    accepted = ev.TaskAccepted(
        client_id="c1",
        occurred_at_ms=1,
        task_id="t1",
        operation="contact_create",
        priority=2,
        max_retries=3,
        timeout_ms=1000,
    )
    updated = mev.TaskUpdated(
        client_id="c1", occurred_at_ms=2, task_id="t1", changed=["tags"], tags=["x"]
    )
    for model, version in ((accepted, 3), (updated, 1)):
        dumped = {k: v for k, v in _datum(model).items() if k != "attachments"}
        blob = write_with(schema_file(type(model).__name__, version), dumped)
        assert CODEC.decode_trusted(blob) == model == CODEC.decode(blob)
    source = MemorySource()
    source.feed(accepted)
    source.feed(updated)
    source.flush()
    row = ProjectionReader(source).task("t1")
    assert row is not None and row.attachments == [] and row.tags == ["x"]


def _datum(model: Any) -> dict[str, Any]:
    """The Avro datum of ``model`` (JSON documents as their wire text)."""
    dumped: dict[str, Any] = model.model_dump(mode="json")
    return dumped


# -- the SDK and the CLI -----------------------------------------------------------------------


class _Sending(TaskstreamClient):
    def __init__(self) -> None:
        super().__init__(Settings(kafka_bootstrap_servers="127.0.0.1:1"))
        self.sent: list[cmd.Command] = []

    async def send(self, command: cmd.Command) -> Any:
        self.sent.append(command)


async def test_the_sdk_submits_and_edits_attachments() -> None:
    client = _Sending()
    task_id = await client.submit(
        "c1", "contact_create", {"email": "a@example.com"}, attachments=[PDF]
    )
    (submitted,) = client.sent
    assert isinstance(submitted, cmd.SubmitTask) and submitted.task_id == task_id
    assert submitted.attachments == [cmd.TaskAttachment(**PDF)]
    await client.update_task("c1", task_id, attachments=[cmd.TaskAttachment(**LINK)])
    updated = client.sent[-1]
    assert isinstance(updated, cmd.UpdateTask)
    assert (updated.changed, updated.attachments) == (["attachments"], [cmd.TaskAttachment(**LINK)])
    await client.update_task("c1", task_id, attachments=None)
    assert client.sent[-1].attachments == []  # type: ignore[attr-defined]


async def test_the_sdk_refuses_bad_attachments_with_the_field() -> None:
    client = _Sending()
    with pytest.raises(InvalidCommandError, match=r"attachments\[0\]\.url: must be an http"):
        await client.submit("c1", "contact_create", {"email": "a@example.com"},
                            attachments=[{"url": "file:///etc/passwd", "name": "p"}])  # fmt: skip
    with pytest.raises(InvalidCommandError, match=r"attachments\[0\]\.name: must not be empty"):
        await client.update_task(
            "c1", "t1", attachments=[{"url": "https://x.example", "name": " "}]
        )
    with pytest.raises(InvalidCommandError, match="invalid UpdateTask.attachments"):
        await client.update_task("c1", "t1", attachments=[{"url": "https://x.example"}])
    assert client.sent == []


def test_the_cli_reads_an_attachment_with_its_options() -> None:
    assert conv.attachment("https://files.example.com/q3%20report.pdf") == {
        "url": "https://files.example.com/q3%20report.pdf",
        "name": "q3 report.pdf",
        "size_bytes": None,
        "content_type": None,
    }
    assert conv.attachment(
        "https://files.example.com/c.pdf?a=1,b=2,name=Contract, signed,size=482113,type=application/pdf"
    ) == {
        "url": "https://files.example.com/c.pdf?a=1,b=2",
        "name": "Contract, signed",
        "size_bytes": 482_113,
        "content_type": "application/pdf",
    }
    for text, problem in (
        ("ftp://x.example/a", "must be an http or https URL"),
        ("https://x.example/a,size=big", "size= must be a number of bytes"),
        ("https://x.example/a,name=a,name=b", "name= given twice"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=problem):
            conv.attachment(text)


def test_the_cli_submit_and_edit_take_attachments() -> None:
    from streams.cli.main import build_parser
    from streams.cli.tasks import _managed

    parser = build_parser()
    args = parser.parse_args(
        ["submit", "workflow_trigger", "--client", "c1",
         "--attach", "https://example.com/a.pdf", "--attach", "https://example.com/b,name=B"]
    )  # fmt: skip
    assert [a["name"] for a in _managed(args)["attachments"]] == ["a.pdf", "B"]
    assert "attachments" not in _managed(parser.parse_args(["submit", "x", "--client", "c1"]))
    edit = parser.parse_args(["edit", "t1", "--no-attachments"])
    assert (edit.attach, edit.no_attachments) == (None, True)
    with pytest.raises(SystemExit):
        parser.parse_args(["submit", "x", "--client", "c1", "--attach", "mailto:a@example.com"])


def test_taskstream_status_lists_a_tasks_attachments() -> None:
    from streams.cli.render import format_task

    shown = format_task({"task_id": "t1", "state": "queued", "attachments": [PDF, LINK]})
    assert "contract.pdf" in shown and "482113" in shown and "application/pdf" in shown
    assert "http://example.com/brief" in shown
    assert "attachment" not in format_task({"task_id": "t1", "attachments": []})
