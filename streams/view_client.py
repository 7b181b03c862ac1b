"""The client of the HTTP view (the CLI's and the SDK's `get_task`): ``GET`` a path, one clear error when it does not answer.

Each function raises a ``TaskstreamError`` with one clear sentence when the view refuses or is
not running; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from schemas.errors import TaskstreamError
from streams.errors import BrokerError
from streams.settings import Settings


class NotFoundError(TaskstreamError):
    """The view knows no such task, session or batch."""


def view_url(settings: Settings, path: str) -> str:
    host = settings.http_host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{settings.http_port}{path}"


async def view_get(settings: Settings, path: str, params: dict[str, Any] | None = None) -> Any:
    headers = {}
    if settings.http_token is not None:
        headers["Authorization"] = f"Bearer {settings.http_token.get_secret_value()}"
    url = view_url(settings, path)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(url, params=params, headers=headers) as response:
                body = await response.json(content_type=None)
                if response.status == 404:
                    raise NotFoundError(
                        str(body.get("detail", body)) if isinstance(body, dict) else "not found"
                    )
                if response.status >= 400:
                    detail = body.get("detail", body) if isinstance(body, dict) else body
                    raise TaskstreamError(f"the view answered {response.status}: {detail}")
                return body
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BrokerError(
            f"the HTTP view at {view_url(settings, '')} does not answer ({type(exc).__name__}); "
            "is `taskstream run` or `taskstream view` running?"
        ) from None


async def client_of(settings: Settings, task_id: str) -> str:
    row = await view_get(settings, f"/tasks/{task_id}")
    return str(row["client_id"])
