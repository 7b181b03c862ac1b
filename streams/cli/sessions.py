"""``taskstream sessions cleanup``: clean a client's stale sessions now (seed 000's
``cleanupStaleSessions()``); the processor cleans every session of the client silent for
``TASKSTREAM_SESSION_STALE_MS`` and queues its work again."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streams.settings import Settings


def _cmd_cleanup(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.broker_address import reachable
    from streams.client import TaskstreamClient

    clients = list(dict.fromkeys(args.client))

    async def go() -> None:
        ready = await reachable(settings)
        async with TaskstreamClient(ready) as client:
            for client_id in clients:
                await client.cleanup_sessions(client_id)

    asyncio.run(go())
    print(f"cleanup sent for {', '.join(clients)}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("sessions", help="manage executor sessions")
    actions = p.add_subparsers(dest="sessions_command", required=True, metavar="ACTION")
    c = actions.add_parser("cleanup", help="clean a client's stale sessions now")
    c.add_argument(
        "--client", action="append", required=True, help="client id (repeat for several)"
    )
    c.set_defaults(handler=_cmd_cleanup)
