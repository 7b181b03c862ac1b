"""Two clients' worth of read-side rows (tasks, a session, a batch, a batch job, a dead letter,
a task pending review, a scheduled task, a task waiting for input, a multi-step task, a template
and a schedule) made by the real decider, for access and masking tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections.memory import MemorySource
from schemas import commands as c
from schemas import events as ev
from streams.secrets import Keyring, new_key_entry, seal_payload
from tests.support.gwt import Harness, register, submit

# The key ring the submitters of these tests seal credentials with, as the SDK would.
KEYRING = Keyring.parse(new_key_entry("test"))


class TenantSource(MemorySource):
    def lag(self) -> dict[int, int]:
        return {0: 0}

    def running(self) -> bool:
        return True


@dataclass(frozen=True)
class Tenant:
    client: str

    @property
    def session(self) -> str:
        return f"s-{self.client}"

    @property
    def dead(self) -> str:
        return f"dead-{self.client}"

    @property
    def review(self) -> str:
        return f"review-{self.client}"

    @property
    def job(self) -> str:
        return f"J-{self.client}"


def tenant_events(
    client: str, payload: dict[str, Any] | None = None, secret: str | None = None
) -> list[ev.Event]:
    """Events of one client: session ``s-<c>``, a batch of ``b1-<c>``/``b2-<c>`` assigned to it,
    ``dead-<c>`` dead-lettered, ``review-<c>`` pending review, batch job ``J-<c>``.

    With ``secret``, it is also planted wherever an executor or a person could put one: in
    errors, outputs, a progress message and a rejection reason, and in batch-job results (the
    tasks of the batch and of the batch job then finish, and ``rejected-<c>`` is rejected).
    """
    t = Tenant(client)
    extra = seal_payload(KEYRING, client, dict(payload or {}))
    h = Harness()
    h.given(register(t.session, client=client, max_concurrent=5), at=1)
    h.do(submit(t.dead, "workflow_trigger", client=client, max_retries=0, payload=extra), at=2)
    error = "upstream said no"
    if secret is not None:
        error += f": Authorization: Bearer {secret}"
        h.do(
            c.ReportProgress(
                client_id=client,
                task_id=t.dead,
                fencing_token=h.token(t.dead),
                progress=0.5,
                message=f"logging in with password={secret}",
            ),
            at=3,
        )
    h.fail(t.dead, error=error, at=3)
    for n in (1, 2):
        h.do(submit(f"b{n}-{client}", "tag_add", client=client, payload=extra), at=4)
    h.tick(10_000)
    h.do(submit(t.review, "contact_create", client=client, requires_review=True), at=10_001)
    # A task scheduled far ahead (``later-<c>``) and one waiting for a person (``ask-<c>``).
    h.do(submit(f"later-{client}", "contact_create", client=client, scheduled_for_ms=10**13))
    h.do(submit(f"ask-{client}", "workflow_trigger", client=client), at=10_001)
    h.do(
        c.RequestInput(
            client_id=client,
            task_id=f"ask-{client}",
            fencing_token=h.token(f"ask-{client}"),
            prompt="Which list?",
        ),
        at=10_001,
    )
    h.do(
        c.SubmitBatchJob(
            client_id=client,
            batch_job_id=t.job,
            operation="report_generate",
            items=[c.BatchJobItem(payload=extra) for _ in range(2)],
            max_retries=0,
        ),
        at=10_002,
    )
    if secret is not None:
        batch = h.record(f"b1-{client}").batch_id
        assert batch is not None
        h.do(
            c.ReportResult(
                client_id=client,
                batch_id=batch,
                fencing_token=h.token(f"b1-{client}"),
                success=False,
                output={"accessToken": secret, "note": f"token={secret}"},
                items=[
                    c.ItemResult(task_id=f"b1-{client}", success=True, output={"password": secret}),
                    c.ItemResult(task_id=f"b2-{client}", success=False, error=f"api_key={secret}"),
                ],
            ),
            at=10_003,
        )
        first = f"{t.job}.0"
        h.succeed(first, at=10_004, output={"apiKey": secret, "echo": f"Bearer {secret}"})
        h.fail(f"{t.job}.1", error=f"secret: {secret}", at=10_005)
        h.do(submit(f"rejected-{client}", "contact_create", client=client, requires_review=True))
        h.do(
            c.RejectTask(
                client_id=client,
                task_id=f"rejected-{client}",
                reviewer="ops",
                reason=f"contains token: {secret}",
            ),
            at=10_006,
        )
    # A multi-step task (its step ``wf-<c>:one``), template ``T-<c>`` and schedule ``S-<c>``.
    h.do(
        submit(
            f"wf-{client}",
            "integration_sync",
            client=client,
            max_retries=0,
            steps=[c.TaskStep(id="one", operation="integration_sync", config=extra)],
        ),
        at=10_010,
    )
    if secret is not None:
        h.succeed(f"wf-{client}:one", at=10_011, output={"apiKey": secret})
    h.do(
        c.DefineTemplate(
            client_id=client,
            name=f"T-{client}",
            task={"operation": "integration_sync", "payload": extra},
        ),
        at=10_012,
    )
    h.do(
        c.CreateSchedule(
            client_id=client,
            schedule_id=f"S-{client}",
            interval_ms=60_000,
            template=f"T-{client}",
        ),
        at=10_013,
    )
    return h.log


def two_tenants(payload: dict[str, Any] | None = None, secret: str | None = None) -> TenantSource:
    source = TenantSource()
    for client in ("A", "B"):
        for event in tenant_events(client, payload, secret):
            source.feed(event)
    source.flush()
    return source


def batch_of(source: TenantSource, client: str) -> str:
    """The id of the batch the decider formed for ``client``."""
    from projections.reader import ProjectionReader

    task = ProjectionReader(source).task(f"b1-{client}")
    assert task is not None and task.batch_id is not None, task
    return task.batch_id
