"""The ``api_call`` handler (seed 001): one HTTP request with optional authentication.

Payload (camelCase, as in the seed)::

    apiEndpoint    http(s) URL (required)
    apiMethod      GET (default), POST, PUT, PATCH, DELETE, HEAD, OPTIONS
    apiPayload     JSON body; for GET/HEAD/DELETE/OPTIONS an object becomes query parameters
    customHeaders  object of header name -> string value
    authType       none (default) | bearer | api_key | basic
    bearerToken    required for bearer
    apiKey         required for api_key; sent in header apiKeyHeader (default X-API-Key)
    username, password   required for basic
    timeout        milliseconds (default 30000)

A 2xx answer completes the task with ``{"status", "headers", "body"}``; anything else fails it
with an error naming the status: permanently for a 4xx other than 408 and 429 (retrying the
same request cannot help), retryably for 408, 429 and 5xx (after the answer's Retry-After),
timeouts and broken connections. Secrets (tokens, keys, passwords, sensitive custom headers,
credentials in the URL) never reach a log line, an error or the output: they are replaced by
``***`` wherever they would appear. The destination must be a public address unless
``TASKSTREAM_OUTBOUND_ALLOW`` lists it (``outbound``), checked after DNS resolution and on every
redirect.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import Any

from schemas.credentials import is_credential_name, url_credentials
from schemas.masking import Masker
from schemas.task_configs import validate_task_config
from streams.executor.context import TaskContext
from streams.executor.errors import (
    ApiCallConfigError,
    ApiCallError,
    ApiCallRefusedError,
    ApiCallRetryableError,
)
from streams.executor.handlers.ghl_api import retry_after_ms
from streams.executor.handlers.http import HttpAnswer, HttpClient, status_message
from streams.executor.handlers.outbound import OutboundPolicy

log = logging.getLogger(__name__)

DEFAULT_API_KEY_HEADER = "X-API-Key"
DEFAULT_TIMEOUT_MS = 30_000
_QUERY_METHODS = ("GET", "HEAD", "DELETE", "OPTIONS")


def validate_api_call_config(payload: Mapping[str, Any]) -> list[str]:
    """Every problem of an ``api_call`` payload, each naming its field; empty when valid.

    The rules live in :mod:`schemas.task_configs`, shared with the submit-time check.
    """
    return validate_task_config("api_call", payload)


class _Masker(Masker):
    """Replaces every secret of one ``api_call`` request in text bound for logs, errors and
    output: tokens, keys, passwords, basic credentials, sensitive headers and URL parts."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        secrets: set[str] = set()
        for field in ("bearerToken", "apiKey", "password"):
            value = payload.get(field)
            if isinstance(value, str) and value:
                secrets.add(value)
        username, password = payload.get("username"), payload.get("password")
        if isinstance(username, str) and isinstance(password, str) and password:
            secrets.add(base64.b64encode(f"{username}:{password}".encode()).decode())
        headers = payload.get("customHeaders")
        if isinstance(headers, Mapping):
            for name, value in headers.items():
                if isinstance(name, str) and is_credential_name(name) and isinstance(value, str):
                    if value:
                        secrets.add(value)
        endpoint = payload.get("apiEndpoint")
        if isinstance(endpoint, str):
            secrets.update(url_credentials(endpoint))
        super().__init__(secrets)


class ApiCallHandler:
    """``handler(ctx)`` for ``api_call``. Keeps one ``aiohttp.ClientSession`` (created on first
    use) whose connections pass ``outbound`` (default: public addresses only); close it with
    ``await handler.close()`` or use the handler as an async context manager.
    """

    def __init__(self, outbound: OutboundPolicy | None = None) -> None:
        self._http = HttpClient(outbound)

    async def __aenter__(self) -> ApiCallHandler:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.close()

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        payload = ctx.payload
        masker = _Masker(payload)
        problems = validate_api_call_config(payload)
        if problems:
            raise ApiCallConfigError(masker.text("invalid api_call config: " + "; ".join(problems)))

        url: str = payload["apiEndpoint"]
        method = str(payload.get("apiMethod", "GET")).upper()
        headers = {str(k): str(v) for k, v in (payload.get("customHeaders") or {}).items()}
        auth_type = payload.get("authType") or "none"
        if auth_type == "bearer":
            headers["Authorization"] = f"Bearer {payload['bearerToken']}"
        elif auth_type == "api_key":
            headers[payload.get("apiKeyHeader") or DEFAULT_API_KEY_HEADER] = payload["apiKey"]
        elif auth_type == "basic":
            pair = f"{payload['username']}:{payload['password']}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        timeout_ms = payload.get("timeout") or DEFAULT_TIMEOUT_MS

        body = payload.get("apiPayload")
        params: dict[str, str] | None = None
        json_body: Any = None
        if body is not None:
            if method in _QUERY_METHODS and isinstance(body, Mapping):
                params = {str(k): _query_value(v) for k, v in body.items()}
            else:
                json_body = body

        safe = f"{method} {masker.url(url)}"
        log.info("api_call task %s: %s", ctx.task_id, safe)
        ctx.report_progress(0.1, f"calling {safe}")
        answer = await self._http.fetch(
            method,
            url,
            what="api_call",
            error=ApiCallRetryableError,  # transport failures and timeouts: try again
            masker=masker,
            timeout_ms=timeout_ms,
            headers=headers,
            json_body=json_body,
            params=params,
        )
        if not 200 <= answer.status < 300:
            raise _failure(status_message("api_call", method, masker.url(url), answer), answer)
        return {
            "status": answer.status,
            "content_type": answer.content_type,
            "body": answer.body,
            "elapsed_ms": answer.elapsed_ms,
        }


def _failure(message: str, answer: HttpAnswer) -> ApiCallError:
    """A 408, 429 or 5xx answer is worth another attempt (after its Retry-After); any other
    non-2xx answer says the request itself is wrong."""
    status = answer.status
    if status in (408, 429) or status >= 500:
        return ApiCallRetryableError(message, retry_after_ms(answer.headers))
    return ApiCallRefusedError(message)


def _query_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
