"""A local HTTP receiver of outcome notices: answers each POST with the next status of its
script (then 200), and records every request (path, headers, JSON body)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    url: str = ""
    script: dict[str, list[int]] = field(default_factory=dict)
    """path -> statuses to answer in turn (then 200)."""
    seen: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on every request (clear it to wait for the next)."""

    def at(self, path: str) -> list[Received]:
        return [r for r in self.seen if r.path == path]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def hook(request: web.Request) -> web.Response:
        text = await request.text()
        state.seen.append(
            Received(request.path, dict(request.headers), json.loads(text) if text else None)
        )
        state.arrived.set()
        statuses = state.script.get(request.path, [])
        status = statuses.pop(0) if statuses else 200
        return web.Response(status=status, text="ok" if status < 300 else "down")

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()
