"""``taskstream submit``, ``cancel``/``approve``/``reject``/``expedite`` and ``status``: one
task's commands and the view's answer about it."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streams.cli import args as conv
from streams.errors import ConfigurationError
from streams.settings import Settings


def check_operation(settings: Settings, operation: str) -> None:
    """An operation the catalog knows, or a ``ConfigurationError`` listing the known ones."""
    from schemas.catalog import load_catalog

    catalog = load_catalog(settings.operations_file)
    if operation not in catalog:
        known = ", ".join(sorted(catalog))
        raise ConfigurationError(f"unknown operation {operation!r}; known operations: {known}")


def _cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.broker_address import reachable
    from streams.client import TaskstreamClient

    check_operation(settings, args.operation)

    async def go() -> str:
        ready = await reachable(settings)
        async with TaskstreamClient(ready) as client:
            return await client.submit(
                args.client,
                args.operation,
                args.payload,
                task_id=args.task_id,
                priority=args.priority,
                max_retries=args.max_retries,
                timeout_ms=args.timeout_ms,
                scheduled_for_ms=args.scheduled_for_ms,
                requires_review=args.review,
                depends_on=args.depends_on,
                capabilities=args.capability,
                **_managed(args),
            )

    print(asyncio.run(go()))
    return 0


def _managed(args: argparse.Namespace) -> dict[str, Any]:
    """The task-management fields given on the command line (title, tags, due date, steps,
    attachments)."""
    given = {
        "title": args.title,
        "description": args.description,
        "tags": args.tag or None,
        "due_at_ms": args.due_at_ms,
        "steps": args.steps,
        "attachments": args.attach or None,
    }
    return {k: v for k, v in given.items() if v is not None}


def _cmd_steer(args: argparse.Namespace, settings: Settings) -> int:
    """cancel / approve / reject / expedite: the client id comes from the view unless given."""
    from streams.cli.broker_address import reachable
    from streams.client import TaskstreamClient
    from streams.view_client import client_of

    async def go() -> None:
        client_id = args.client or await client_of(settings, args.task_id)
        ready = await reachable(settings)
        async with TaskstreamClient(ready) as client:
            if args.command == "cancel":
                await client.cancel(client_id, args.task_id, reason=args.reason)
            elif args.command == "approve":
                await client.approve(client_id, args.task_id, reviewer=args.reviewer)
            elif args.command == "reject":
                await client.reject(
                    client_id, args.task_id, reviewer=args.reviewer, reason=args.reason
                )
            else:
                await client.expedite(client_id, args.task_id)

    asyncio.run(go())
    print(f"{args.command} sent for {args.task_id}")
    return 0


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.render import format_status, format_task
    from streams.view_client import view_get

    if args.task_id:
        print(format_task(asyncio.run(view_get(settings, f"/tasks/{args.task_id}"))))
    else:
        print(format_status(asyncio.run(view_get(settings, "/status"))))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("submit", help="submit a task")
    p.add_argument("operation")
    p.add_argument("--client", required=True, help="client id (routes to its sessions)")
    p.add_argument("--payload", type=conv.json_object, default="{}", help="JSON object")
    p.add_argument("--task-id", default=None, help="idempotency key (default: a new uuid)")
    p.add_argument("--priority", type=int, choices=range(1, 6), default=None)
    p.add_argument("--max-retries", type=int, default=None)
    p.add_argument("--timeout-ms", type=int, default=None)
    p.add_argument("--scheduled-for-ms", type=int, default=None)
    p.add_argument("--review", action="store_true", help="hold for human review")
    p.add_argument("--depends-on", action="append", default=[], metavar="TASK_ID")
    p.add_argument("--capability", action="append", default=[])
    p.add_argument("--title", default=None)
    p.add_argument("--description", default=None)
    p.add_argument("--tag", action="append", default=[])
    p.add_argument("--due-at-ms", type=int, default=None)
    p.add_argument(
        "--attach",
        type=conv.attachment,
        action="append",
        default=[],
        metavar="URL[,name=NAME][,size=BYTES][,type=MEDIA/TYPE]",
        help="attach a reference to a file (repeat; at most 20)",
    )
    p.add_argument(
        "--steps",
        type=conv.json_objects,
        default=None,
        help='JSON array of steps: [{"id": "a", "operation": "...", "depends_on": []}, ...]',
    )
    p.set_defaults(handler=_cmd_submit)

    for name, text in (
        ("cancel", "cancel a task (also when it is running)"),
        ("approve", "approve a task held for review"),
        ("reject", "reject a task held for review"),
        ("expedite", "raise a waiting task to critical priority"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("task_id")
        p.add_argument("--client", default=None, help="client id (default: looked up in the view)")
        p.add_argument("--reason", default=None)
        p.add_argument("--reviewer", default=None)
        p.set_defaults(handler=_cmd_steer)

    p = sub.add_parser("status", help="queue status, or one task with its history")
    p.add_argument("task_id", nargs="?")
    p.set_defaults(handler=_cmd_status)
