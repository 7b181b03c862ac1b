"""``taskstream edit``, ``archive``, ``run-now`` and ``answer``: manage a task after its submit
(``docs/task-management.md``). The client id comes from the view unless ``--client`` gives it."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streams.cli import args as conv
from streams.settings import Settings


def _assignee(text: str) -> tuple[str, str]:
    """``agent:ID`` or ``session:ID`` (``--assign``)."""
    kind, _, who = text.partition(":")
    if kind not in ("agent", "session") or not who:
        raise argparse.ArgumentTypeError(f"expected agent:ID or session:ID, not {text!r}")
    return kind, who


def _cmd_manage(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.broker_address import reachable
    from streams.client import TaskstreamClient
    from streams.view_client import client_of

    async def go() -> None:
        client_id = args.client or await client_of(settings, args.task_id)
        ready = await reachable(settings)
        async with TaskstreamClient(ready) as client:
            if args.command == "archive":
                await client.archive(client_id, args.task_id, reason=args.reason)
            elif args.command == "run-now":
                await client.run_now(client_id, args.task_id)
            elif args.command == "answer":
                await client.provide_input(client_id, args.task_id, args.input)
            else:
                changes: dict[str, Any] = {
                    name: getattr(args, name)
                    for name in ("priority", "payload", "scheduled_for_ms", "due_at_ms", "title")
                    if getattr(args, name) is not None
                }
                if args.tag is not None:
                    changes["tags"] = args.tag
                if args.assign is not None:
                    changes["assigned_to"] = args.assign
                if args.attach is not None or args.no_attachments:
                    changes["attachments"] = args.attach or []
                await client.update_task(client_id, args.task_id, **changes)

    asyncio.run(go())
    print(f"{args.command} sent for {args.task_id}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("edit", help="edit a task that has not started")
    p.add_argument("task_id")
    p.add_argument("--client", default=None, help="client id (default: looked up in the view)")
    p.add_argument("--priority", type=int, choices=range(1, 6), default=None)
    p.add_argument("--payload", type=conv.json_object, default=None, help="JSON object")
    p.add_argument("--scheduled-for-ms", type=int, default=None)
    p.add_argument("--due-at-ms", type=int, default=None)
    p.add_argument("--title", default=None)
    p.add_argument("--tag", action="append", default=None, help="the new tags (repeat)")
    p.add_argument("--assign", type=_assignee, default=None, metavar="agent:ID|session:ID")
    attach = p.add_mutually_exclusive_group()
    attach.add_argument(
        "--attach",
        type=conv.attachment,
        action="append",
        default=None,
        metavar="URL[,name=NAME][,size=BYTES][,type=MEDIA/TYPE]",
        help="the new attachments (repeat; replaces the list)",
    )
    attach.add_argument("--no-attachments", action="store_true", help="remove every attachment")
    p.set_defaults(handler=_cmd_manage)
    for name, text in (
        ("archive", "archive a task: cancel unfinished work, hide it, keep its history"),
        ("run-now", "run a scheduled, retry-waiting or deferred task now"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("task_id")
        p.add_argument("--client", default=None, help="client id (default: looked up in the view)")
        p.add_argument("--reason", default=None)
        p.set_defaults(handler=_cmd_manage)
    p = sub.add_parser("answer", help="answer a task waiting for input")
    p.add_argument("task_id")
    p.add_argument("--client", default=None, help="client id (default: looked up in the view)")
    p.add_argument("--input", type=conv.json_object, required=True, help="JSON object")
    p.set_defaults(handler=_cmd_manage)
