"""The SDK's conveniences (seed 003): ``submit_many`` (one call, one flush), ``wait`` (until
each task has its outcome) and ``get_task`` (the view's task), against the real processor, a
scripted executor, the projector and the HTTP view on a port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from api.projector import Projector
from api.view import ViewServer, create_app
from schemas import events as ev
from schemas.records import Assignment
from streams.client import TaskstreamClient
from streams.errors import InvalidCommandError
from streams.kafka.process import free_loopback_port
from streams.outcome_wait import WaitTimeout
from streams.settings import Settings
from streams.view_client import NotFoundError

from .distributor_harness import Reply, register, rig

pytestmark = pytest.mark.integration

CLIENT = "acme"
OP = "conversation_send"


def script(assignment: Assignment) -> Reply:
    if any(item.payload.get("fail") for item in assignment.items):
        return Reply(success=False, error="carrier refused")
    return Reply(output={"sent": assignment.task_id})


async def test_submit_many_then_wait_returns_every_outcome(
    make_settings: Callable[..., Settings],
) -> None:
    async with rig(make_settings, script, max_retries=0) as r:
        await r.send(register(CLIENT, "s-1", max_concurrent=8))
        async with TaskstreamClient(r.settings) as client:
            ids = await client.submit_many(
                [{"client_id": CLIENT, "operation": OP, "payload": {"n": i}} for i in range(5)]
                + [{"client_id": CLIENT, "operation": OP, "payload": {"fail": True}}]
            )
            assert len(ids) == len(set(ids)) == 6

            outcomes = await client.wait(ids, timeout=60)

        assert set(outcomes) == set(ids)
        assert [outcomes[i].outcome for i in ids] == ["completed"] * 5 + ["failed"]
        first = outcomes[ids[0]]
        assert isinstance(first, ev.TaskCompleted)
        assert first.output == {"sent": ids[0]}


async def test_submit_many_sends_nothing_when_one_task_is_invalid(
    make_settings: Callable[..., Settings],
) -> None:
    async with rig(make_settings, script, delay=False) as r:
        async with TaskstreamClient(r.settings) as client:
            with pytest.raises(InvalidCommandError, match=r"^tasks\[1\]"):
                await client.submit_many(
                    [
                        {"client_id": CLIENT, "operation": OP, "task_id": "ok-1"},
                        {"client_id": CLIENT, "operation": OP, "priority": 99},
                    ]
                )
            marker = await client.submit(CLIENT, OP, task_id="marker")
        events = await r.wait(
            lambda es: any(isinstance(e, ev.TaskAccepted) and e.task_id == marker for e in es)
        )
        assert not [e for e in events if getattr(e, "task_id", None) == "ok-1"]


async def test_wait_names_the_tasks_without_an_outcome_when_time_is_up(
    make_settings: Callable[..., Settings],
) -> None:
    async with rig(make_settings, script, delay=False, max_retries=0) as r:
        await r.send(register(CLIENT, "s-1", max_concurrent=8))
        async with TaskstreamClient(r.settings) as client:
            done = await client.submit(CLIENT, OP)
            await client.wait([done], timeout=60)
            started = time.monotonic()
            with pytest.raises(WaitTimeout) as raised:
                await client.wait([done, "never-submitted"], timeout=1.5)
        assert time.monotonic() - started >= 1.5
        assert raised.value.missing == ["never-submitted"]
        assert set(raised.value.done) == {done}


async def test_get_task_reads_the_task_from_the_view(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_loopback_port()
    async with rig(make_settings, script, delay=False, http_port=port) as r:
        projector = Projector(r.settings, poll_ms=50)
        await projector.start()
        server = ViewServer(create_app(projector.reader), "127.0.0.1", port)
        await server.start()
        try:
            await r.send(register(CLIENT, "s-1", max_concurrent=8))
            async with TaskstreamClient(r.settings) as client:
                task_id = await client.submit(CLIENT, OP, {"to": "+1"})
                await client.wait([task_id], timeout=60)
                deadline = time.monotonic() + 30
                while True:
                    row = await client.get_task(task_id)
                    if row["state"] == "completed" or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                with pytest.raises(NotFoundError):
                    await client.get_task("no-such-task")
        finally:
            await server.stop()
            await projector.stop()
        assert row["task_id"] == task_id
        assert row["state"] == "completed"
        assert row["client_id"] == CLIENT
