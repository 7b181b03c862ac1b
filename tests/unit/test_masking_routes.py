"""Every route's answer is walked for a planted secret: credentials in payloads (by field
name, nested headers included), in errors, outputs, progress messages, rejection reasons, batch
results and batch-job results, and in the bodies of commands that are refused."""

from __future__ import annotations

import json
from typing import Any

import httpx

from api.dashboard import DashboardOptions, SnapshotBuilder
from api.view import create_app
from projections.reader import ProjectionReader
from schemas import commands as cmd
from tests.support.routes import api_routes
from tests.support.tenants import batch_of, two_tenants

SECRET = "sk-live-9f2c7d1e5b"
PAYLOAD: dict[str, Any] = {
    "apiEndpoint": "https://api.example.com/v1",
    "authType": "bearer",
    "bearerToken": SECRET,
    "customHeaders": {"X-Api-Key": SECRET, "Accept": "application/json"},
    "password": SECRET,
}


class Recorder:
    async def send(self, command: cmd.Command) -> None:
        pass


async def test_no_route_answers_with_a_planted_secret() -> None:
    source = two_tenants(PAYLOAD, secret=SECRET)
    reader = ProjectionReader(source)
    app = create_app(reader, commands=Recorder())
    batch = batch_of(source, "A")
    gets = {
        "/tasks/{task_id}": [
            f"/tasks/{t}" for t in ("dead-A", "b1-A", "b2-A", "J-A.0", "J-A.1", "rejected-A")
        ],
        "/tasks": ["/tasks", "/tasks?client_id=A", "/tasks?status=failed"],
        "/sessions/{session_id}": ["/sessions/s-A"],
        "/sessions": ["/sessions"],
        "/batches/{batch_id}": [f"/batches/{batch}"],
        "/batch-jobs/{batch_job_id}": ["/batch-jobs/J-A"],
        "/batch-jobs": ["/batch-jobs", "/batch-jobs?client_id=A"],
        "/batches": ["/batches", "/batches?client_id=A"],
        "/dlq": ["/dlq", "/dlq?client_id=A"],
        "/status": ["/status"],
        "/health": ["/health"],
        "/metrics": ["/metrics"],
        "/webhooks/activity": ["/webhooks/activity"],  # sources and counts only
        "/dashboard/snapshot": ["/dashboard/snapshot"],
        "/dashboard/operations": ["/dashboard/operations"],
        "/openapi.json": ["/openapi.json"],
        "/tasks/{task_id}/steps": ["/tasks/wf-A/steps"],
        "/tasks/{task_id}/executions": [f"/tasks/{t}/executions" for t in ("dead-A", "b1-A")],
        "/schedules": ["/schedules", "/schedules?client_id=A"],
        "/schedules/{schedule_id}": ["/schedules/S-A"],
        "/templates": ["/templates"],
    }
    bad_payload: dict[str, Any] = {**PAYLOAD, "apiEndpoint": f"https://user:{SECRET}@"}
    bad_submit = {"client_id": "A", "operation": "api_call", "payload": bad_payload}
    posts: dict[tuple[str, str], list[dict[str, Any]]] = {
        ("/tasks", "POST"): [bad_submit],
        ("/batch-jobs", "POST"): [
            {"client_id": "A", "operation": "api_call", "items": [{"payload": PAYLOAD}] * 2},
        ],
        ("/schedules", "POST"): [
            {"client_id": "A", "interval_ms": 60_000, "task": {**bad_submit, "client_id": None}},
            {
                "client_id": "A",
                "interval_ms": 60_000,
                "task": {"operation": "api_call", "payload": bad_payload},
            },
        ],
        ("/templates", "POST"): [
            {
                "client_id": "A",
                "name": "t",
                "task": {"operation": "api_call", "payload": bad_payload},
            },
        ],
        # An edit's refusal names fields, never values.
        ("/tasks/review-A", "PUT"): [{"payload": bad_payload, "priority": 9}],
        ("/tasks/ask-A/input", "POST"): [{"input": {"password": SECRET}, "extra": 1}],
    }
    # Not in the document: the page (no data), /live (its events are the snapshot's JSON,
    # checked below) and /openapi.json itself (visited above).
    commands = {
        ("/tasks", "POST"),
        ("/batch-jobs", "POST"),
        ("/schedules", "POST"),
        ("/templates", "POST"),
    }
    walked = {(p, "GET") for p in gets if p != "/openapi.json"} | commands
    writes = {(p, m) for p, m in api_routes(app) if m != "GET"}
    assert {(p, m) for p, m in api_routes(app) if m == "GET"} | commands == walked, (
        "a GET route this walk does not visit"
    )
    # The other commands answer with ids and links only (TaskAccepted, SessionAccepted,
    # RedriveReport) or a problem naming an id: none carries a payload back.
    assert writes - commands == {
        ("/tasks/{task_id}/cancel", "POST"),
        ("/batch-jobs/{batch_job_id}/cancel", "POST"),
        ("/tasks/{task_id}/approve", "POST"),
        ("/tasks/{task_id}/reject", "POST"),
        ("/tasks/{task_id}/expedite", "POST"),
        ("/sessions", "POST"),
        ("/sessions/{session_id}", "DELETE"),
        ("/sessions/cleanup", "POST"),  # client and session ids only (CleanupAccepted)
        ("/dlq/redrive", "POST"),
        ("/schedules/{schedule_id}", "DELETE"),
        ("/templates/{name}", "DELETE"),
        ("/tasks/{task_id}", "PUT"),
        ("/tasks/{task_id}", "DELETE"),
        ("/tasks/{task_id}/run", "POST"),
        ("/tasks/{task_id}/input", "POST"),
        # A task link (WebhookAccepted), a reason without the message (WebhookIgnored) or a
        # problem naming the field a rule needs.
        ("/webhooks/{source}", "POST"),
    }

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://view"
    ) as http:
        seen = 0
        for urls in gets.values():
            for url in urls:
                r = await http.get(url)
                assert r.status_code == 200, (url, r.text)
                assert SECRET not in r.text, (url, r.text)
                seen += len(r.text)
        for (path, method), bodies in posts.items():
            for body in bodies:
                r = await http.request(method, path, json=body)
                assert SECRET not in r.text, (path, r.text)
        # The rows hold what the walk must find masked (so the test can fail).
        task = (await http.get("/tasks/dead-A")).json()
        assert task["payload"]["bearerToken"] == "***"
        assert task["payload"]["customHeaders"] == {
            "X-Api-Key": "***",
            "Accept": "application/json",
        }
        assert "Bearer ***" in task["last_error"]
        steps = (await http.get("/tasks/wf-A/steps")).json()["steps"]
        assert steps[0]["output"]["apiKey"] == "***"
        schedule = (await http.get("/schedules/S-A")).json()
        assert schedule["task"]["payload"]["bearerToken"] == "***"
        job = (await http.get("/batch-jobs/J-A")).json()
        assert job["results"]["J-A.0"]["output"]["apiKey"] == "***"
        assert job["results"]["J-A.1"]["error"] == "secret: ***"
    live = SnapshotBuilder(reader, DashboardOptions()).json()
    assert SECRET not in live and json.loads(live)["events"]
