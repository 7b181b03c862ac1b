"""Shipped handlers, without network: the simulated GHL handler and api_call validation."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.catalog import load_catalog
from streams.executor import ExecutorError, SimulatedFailure, TaskContext
from streams.executor.handlers import SimulatedGhlHandler, ghl_handlers, validate_api_call_config
from streams.executor.handlers.api_call import _Masker


def ctx(operation: str, task_id: str = "t1", **payload: Any) -> TaskContext:
    return TaskContext(
        task_id=task_id,
        client_id="c1",
        operation=operation,
        payload=payload,
        attempt=0,
        fencing_token=1,
    )


async def test_simulated_ghl_returns_a_record_id_named_for_the_operation() -> None:
    handler = SimulatedGhlHandler(scale=0.0, seed=1)
    out = await handler(ctx("contact_create"))
    assert set(out) == {"contact_id", "operation"}
    assert out["contact_id"].startswith("con_")
    assert (await handler(ctx("opportunity_create")))["opportunity_id"].startswith("opp_")
    assert (await handler(ctx("report_generate")))["report_id"]


async def test_simulated_ghl_failures_follow_the_seed() -> None:
    async def outcomes(seed: int) -> list[bool]:
        handler = SimulatedGhlHandler(scale=0.0, failure_rate=0.5, seed=seed)
        results = []
        for i in range(40):
            try:
                await handler(ctx("tag_add", task_id=f"t{i}"))
                results.append(True)
            except SimulatedFailure as exc:
                assert "tag_add" in str(exc)
                results.append(False)
        return results

    first, again, other = await outcomes(7), await outcomes(7), await outcomes(8)
    assert first == again
    assert first != other
    assert 0 < first.count(False) < 40


async def test_simulated_ghl_never_fails_at_rate_zero_and_always_at_one() -> None:
    never = SimulatedGhlHandler(scale=0.0, failure_rate=0.0, seed=3)
    always = SimulatedGhlHandler(scale=0.0, failure_rate=1.0, seed=3)
    for i in range(20):
        await never(ctx("note_create", task_id=f"t{i}"))
        with pytest.raises(SimulatedFailure):
            await always(ctx("note_create", task_id=f"t{i}"))


def test_simulated_ghl_duration_scales_the_catalog() -> None:
    catalog = load_catalog()
    handler = SimulatedGhlHandler(catalog, scale=0.001)
    assert handler.duration_s("conversation_send") == pytest.approx(
        catalog["conversation_send"].expected_duration_ms / 1_000_000
    )
    with pytest.raises(SimulatedFailure, match="unknown operation"):
        handler.duration_s("no_such_operation")


def test_simulated_ghl_rejects_bad_settings() -> None:
    with pytest.raises(ExecutorError, match="failure_rate"):
        SimulatedGhlHandler(failure_rate=1.5)
    with pytest.raises(ExecutorError, match="scale"):
        SimulatedGhlHandler(scale=-1)


def test_ghl_handlers_cover_the_whole_catalog() -> None:
    handlers = ghl_handlers()
    assert set(handlers) == set(load_catalog())
    assert len(set(map(id, handlers.values()))) == 1


@pytest.mark.parametrize(
    ("payload", "problems"),
    [
        ({"apiEndpoint": "https://api.example.com/v1"}, []),
        (
            {
                "apiEndpoint": "http://127.0.0.1:8080/x?a=1",
                "apiMethod": "post",
                "apiPayload": {"k": [1, 2]},
                "customHeaders": {"X-Trace": "1"},
                "authType": "bearer",
                "bearerToken": "tok",
                "timeout": 500,
            },
            [],
        ),
        ({}, ["apiEndpoint: required"]),
        ({"apiEndpoint": 42}, ["apiEndpoint: must be a string URL"]),
        ({"apiEndpoint": "ftp://host/x"}, ["apiEndpoint: must be an http:// or https:// URL"]),
        ({"apiEndpoint": "not a url"}, ["apiEndpoint: must be an http:// or https:// URL"]),
        ({"apiEndpoint": "https:///path"}, ["apiEndpoint: has no host"]),
        ({"apiEndpoint": "http://host:99999/"}, ["apiEndpoint: not a valid URL"]),
        (
            {"apiEndpoint": "https://h", "apiMethod": "FETCH"},
            ["apiMethod: must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"],
        ),
        (
            {"apiEndpoint": "https://h", "authType": "bearer"},
            ["bearerToken: required when authType is 'bearer'"],
        ),
        (
            {"apiEndpoint": "https://h", "authType": "bearer", "bearerToken": "  "},
            ["bearerToken: required when authType is 'bearer'"],
        ),
        (
            {"apiEndpoint": "https://h", "authType": "api_key"},
            ["apiKey: required when authType is 'api_key'"],
        ),
        (
            {"apiEndpoint": "https://h", "authType": "api_key", "apiKey": "k", "apiKeyHeader": ""},
            ["apiKeyHeader: must be a non-empty header name"],
        ),
        (
            {"apiEndpoint": "https://h", "authType": "basic"},
            [
                "username: required when authType is 'basic'",
                "password: required when authType is 'basic'",
            ],
        ),
        (
            {"apiEndpoint": "https://h", "authType": "oauth"},
            ["authType: must be one of none, bearer, api_key, basic"],
        ),
        (
            {"apiEndpoint": "https://h", "customHeaders": {"X-A": 1}},
            ["customHeaders.X-A: value must be a string"],
        ),
        (
            {"apiEndpoint": "https://h", "customHeaders": {"X-A": "a\r\nX-B: b"}},
            ["customHeaders.X-A: must not contain line breaks"],
        ),
        (
            {"apiEndpoint": "https://h", "customHeaders": ["X-A"]},
            ["customHeaders: must be an object of header name to string"],
        ),
        (
            {"apiEndpoint": "https://h", "timeout": 0},
            ["timeout: must be milliseconds in (0, 3600000]"],
        ),
        (
            {"apiEndpoint": "https://h", "timeout": "30s"},
            ["timeout: must be milliseconds in (0, 3600000]"],
        ),
        (
            {"apiMethod": "GET", "authType": "api_key", "timeout": -5},
            [
                "apiEndpoint: required",
                "apiKey: required when authType is 'api_key'",
                "timeout: must be milliseconds in (0, 3600000]",
            ],
        ),
    ],
)
def test_validate_api_call_config_names_each_bad_field(
    payload: dict[str, Any], problems: list[str]
) -> None:
    assert validate_api_call_config(payload) == problems


def test_masker_hides_every_secret_form() -> None:
    masker = _Masker(
        {
            "apiEndpoint": "https://bob:pw-in-url@api.example.com/x?api_key=qkey123&page=2",
            "bearerToken": "tok-abc",
            "apiKey": "key-xyz",
            "username": "bob",
            "password": "hunter2",
            "customHeaders": {"X-Session-Token": "sess-999", "X-Trace": "trace-1"},
        }
    )
    text = masker.text(
        "tok-abc key-xyz hunter2 Ym9iOmh1bnRlcjI= sess-999 trace-1 pw-in-url qkey123"
    )
    assert text == "*** *** *** *** *** trace-1 *** ***"
    url = masker.url("https://bob:pw-in-url@api.example.com/x?api_key=qkey123&page=2")
    assert url == "https://api.example.com/x?api_key=***&page=2"
    assert masker.json({"echo": ["tok-abc", 1]}) == {"echo": ["***", 1]}
