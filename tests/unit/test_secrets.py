"""Sealing payload credentials: envelope encryption bound to the client, key rotation, the
refusal without a key, the decider's refusal of plaintext, and opening in the worker pool."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import commands as c
from schemas import events as ev
from schemas.commands import ReportResult
from schemas.credentials import is_sealed
from schemas.records import Assignment, AssignmentItem
from streams.distributor import Distributor
from streams.errors import InvalidCommandError
from streams.executor import TaskContext, WorkerPool
from streams.secrets import (
    Keyring,
    SealedValueError,
    SecretsKeyError,
    new_key_entry,
    open_payload,
    seal_command,
    seal_payload,
)
from streams.settings import Settings
from tests.support.gwt import Harness, submit

SECRET = "sk-live-0123456789"
PAYLOAD: dict[str, Any] = {
    "apiEndpoint": "https://api.example.com/v1/contacts",
    "authType": "bearer",
    "bearerToken": SECRET,
    "customHeaders": {"X-Api-Key": SECRET, "Accept": "application/json"},
}


@pytest.fixture
def ring() -> Keyring:
    return Keyring.parse(new_key_entry("k1"))


def test_credentials_are_sealed_in_place_and_open_for_their_client_only(ring: Keyring) -> None:
    sealed = seal_payload(ring, "A", PAYLOAD)
    assert SECRET not in json.dumps(sealed)
    assert is_sealed(sealed["bearerToken"]) and is_sealed(sealed["customHeaders"]["X-Api-Key"])
    assert sealed["apiEndpoint"] == PAYLOAD["apiEndpoint"]
    assert sealed["customHeaders"]["Accept"] == "application/json"
    assert open_payload(ring, "A", sealed) == PAYLOAD
    with pytest.raises(SealedValueError, match="sealed for another client"):
        open_payload(ring, "B", sealed)
    # Sealing is randomized, and sealing a sealed payload changes nothing.
    assert seal_payload(ring, "A", PAYLOAD) != sealed
    assert seal_payload(ring, "A", sealed) is sealed
    plain = {"message": "hi"}
    assert seal_payload(None, "A", plain) is plain and open_payload(None, "A", plain) is plain


def test_urls_with_credentials_are_sealed_whole(ring: Keyring) -> None:
    payload = {"webhookUrl": "https://hooks.example.com/h?token=abc", "message": "x"}
    sealed = seal_payload(ring, "A", payload)
    assert is_sealed(sealed["webhookUrl"]) and "abc" not in json.dumps(sealed)
    assert open_payload(ring, "A", sealed) == payload


def test_rotation_new_key_seals_old_keys_still_open(ring: Keyring) -> None:
    old = seal_payload(ring, "A", PAYLOAD)
    old_entry = f"k1:{_material(ring, 'k1')}"
    rotated = Keyring.parse(f"{new_key_entry('k2')},{old_entry}")
    new = seal_payload(rotated, "A", PAYLOAD)
    assert new["bearerToken"]["kid"] == "k2" and old["bearerToken"]["kid"] == "k1"
    assert open_payload(rotated, "A", old) == PAYLOAD == open_payload(rotated, "A", new)
    retired = Keyring.parse(new_key_entry("k2"))
    with pytest.raises(SealedValueError, match="key 'k1', which TASKSTREAM_SECRETS_KEY"):
        open_payload(retired, "A", old)


def _material(ring: Keyring, kid: str) -> str:
    import base64

    return base64.urlsafe_b64encode(ring.keys[kid]).decode().rstrip("=")


def test_a_damaged_value_does_not_open(ring: Keyring) -> None:
    sealed = seal_payload(ring, "A", PAYLOAD)
    sealed["bearerToken"] = {**sealed["bearerToken"], "data": sealed["bearerToken"]["data"][:-4]}
    with pytest.raises(SealedValueError, match="damaged"):
        open_payload(ring, "A", sealed)
    with pytest.raises(SealedValueError, match="no TASKSTREAM_SECRETS_KEY"):
        open_payload(None, "A", seal_payload(ring, "A", PAYLOAD))


def test_without_a_key_a_credential_is_refused_naming_the_field_and_the_fix() -> None:
    with pytest.raises(InvalidCommandError) as info:
        seal_command(
            None, c.SubmitTask(client_id="A", task_id="t", operation="api_call", payload=PAYLOAD)
        )
    message = str(info.value)
    assert "payload.bearerToken" in message and "TASKSTREAM_SECRETS_KEY" in message
    assert "python -m streams.secrets new-key" in message and SECRET not in message
    job = c.SubmitBatchJob(
        client_id="A",
        batch_job_id="J",
        operation="api_call",
        items=[c.BatchJobItem(payload={"x": 1}), c.BatchJobItem(payload={"password": "p"})],
    )
    with pytest.raises(InvalidCommandError, match=r"items\[1\]\.payload\.password"):
        seal_command(None, job)
    plain = c.CancelTask(client_id="A", task_id="t")
    assert seal_command(None, plain) is plain


def test_seal_command_seals_submits_and_batch_jobs(ring: Keyring) -> None:
    task = seal_command(
        ring, c.SubmitTask(client_id="A", task_id="t", operation="api_call", payload=PAYLOAD)
    )
    assert isinstance(task, c.SubmitTask) and SECRET not in task.model_dump_json()
    job = seal_command(
        ring,
        c.SubmitBatchJob(
            client_id="A",
            batch_job_id="J",
            operation="api_call",
            items=[c.BatchJobItem(payload=PAYLOAD), c.BatchJobItem(payload={"x": 1})],
        ),
    )
    assert isinstance(job, c.SubmitBatchJob) and SECRET not in job.model_dump_json()
    assert job.items[1].payload == {"x": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nocolon", "not kid:base64key"),
        ("k1:short", "32 bytes"),
        ("bad id!:AAAA", "not kid:base64key"),
    ],
)
def test_malformed_key_rings_are_refused(text: str, message: str) -> None:
    with pytest.raises(SecretsKeyError, match=message):
        Keyring.parse(text)
    entry = new_key_entry("k1")
    with pytest.raises(SecretsKeyError, match="twice"):
        Keyring.parse(f"{entry},{entry}")


def test_the_decider_refuses_plaintext_and_the_dead_letter_holds_none(ring: Keyring) -> None:
    h = Harness()
    events = h.do(submit("t1", "api_call", payload=PAYLOAD))
    [rejected] = [e for e in events if isinstance(e, ev.TaskRejected)]
    assert "payload.bearerToken holds a credential in plaintext" in rejected.reason
    assert all(SECRET not in e.model_dump_json() for e in events)
    app = Distributor(Settings(kafka_bootstrap_servers="127.0.0.1:9"))
    state = Harness().state
    decided = app.decide(submit("t1", "api_call", payload=PAYLOAD), state, 0)
    outputs = [o for e in decided for o in app.outputs(state, e)]
    assert outputs and all(SECRET.encode() not in o.value for o in outputs)


def test_a_resubmit_sealed_afresh_is_a_redelivery(ring: Keyring) -> None:
    h = Harness()
    first = submit("t1", "api_call", payload=seal_payload(ring, "A", PAYLOAD))
    assert any(isinstance(e, ev.TaskAccepted) for e in h.do(first))
    again = submit("t1", "api_call", payload=seal_payload(ring, "A", PAYLOAD))
    assert again.payload != first.payload
    assert h.do(again) == []


async def test_the_worker_pool_opens_credentials_for_the_handler(ring: Keyring) -> None:
    seen: list[Any] = []
    reports: list[Any] = []

    async def handler(ctx: TaskContext) -> dict[str, Any]:
        seen.append(dict(ctx.payload))
        return {}

    for keyring in (ring, None):
        pool = WorkerPool({"api_call": handler}, report=reports.append, keyring=keyring)
        await pool.start()
        sealed = seal_payload(ring, "A", PAYLOAD)
        await pool.submit(
            Assignment(
                kind="task",
                client_id="A",
                operation="api_call",
                task_id="t1",
                fencing_token=1,
                attempt=1,
                items=[AssignmentItem(task_id="t1", payload=sealed)],
            )
        )
        assert await pool.close()  # drains: the job has reported
        [result] = [r for r in reports if isinstance(r, ReportResult)]
        reports.clear()
        if keyring is not None:
            assert result.success and seen == [PAYLOAD]
        else:
            assert not result.success and "no TASKSTREAM_SECRETS_KEY" in (result.error or "")
    assert len(seen) == 1


def test_a_batch_job_resealed_is_a_redelivery(ring: Keyring) -> None:
    def job() -> c.SubmitBatchJob:
        sealed = seal_command(
            ring,
            c.SubmitBatchJob(
                client_id="A",
                batch_job_id="J",
                operation="api_call",
                items=[
                    c.BatchJobItem(payload=PAYLOAD),
                    c.BatchJobItem(payload={"apiEndpoint": "https://api.example.com/x"}),
                ],
            ),
        )
        assert isinstance(sealed, c.SubmitBatchJob)
        return sealed

    h = Harness()
    first, again = job(), job()
    assert first.items[0].payload != again.items[0].payload
    assert any(isinstance(e, ev.BatchJobAccepted) for e in h.do(first))
    assert not any(isinstance(e, ev.BatchJobRejected) for e in h.do(again))
    # A plaintext credential in an item is refused.
    plain = c.SubmitBatchJob(
        client_id="A",
        batch_job_id="K",
        operation="api_call",
        items=[c.BatchJobItem(payload=PAYLOAD)],
    )
    [rejected] = [e for e in h.do(plain) if isinstance(e, ev.BatchJobRejected)]
    assert "holds a credential in plaintext" in rejected.reason and SECRET not in rejected.reason
