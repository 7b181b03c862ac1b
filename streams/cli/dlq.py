"""``taskstream dlq list`` and ``taskstream dlq redrive``: the dead letters."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from schemas.errors import TaskstreamError
from streams.errors import ConfigurationError
from streams.settings import Settings


def _cmd_dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.render import table
    from streams.view_client import view_get

    params = {k: v for k, v in (("reason", args.reason), ("client_id", args.client)) if v}
    params["limit"] = str(args.limit)
    answer = asyncio.run(view_get(settings, "/dlq", params))
    items = answer.get("items", [])
    rows = [
        [
            str(i.get("task_id")),
            str(i.get("client_id")),
            str(i.get("operation")),
            str(i.get("reason"))[:70],
        ]
        for i in items
    ]
    print(table(rows, ["task", "client", "operation", "reason"]) if rows else "no dead letters")
    return 0


async def _known_to_view(settings: Settings, task_ids: list[str]) -> set[str]:
    """The ids the read side already knows (a redrive that already reached the processor);
    empty when the view does not answer, in which case the processor's duplicate rule still
    makes a repeated redrive a no-op."""
    from streams.view_client import NotFoundError, view_get

    known: set[str] = set()
    for task_id in task_ids:
        try:
            await view_get(settings, f"/tasks/{task_id}")
        except NotFoundError:
            continue
        except TaskstreamError:
            return set()
        known.add(task_id)
    return known


def _cmd_dlq_redrive(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from streams.cli.broker_address import reachable
    from streams.client import TaskstreamClient
    from streams.redrive import Selection, plan_redrive, read_dead_letters, redrive
    from streams.submit_door import submit_door

    try:
        selection = Selection(
            task_ids=args.task_ids or None,
            all=args.all,
            reason=args.reason,
            client_id=args.client,
            operation=args.operation,
        )
    except ValidationError as exc:
        raise ConfigurationError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None

    async def go() -> Any:
        ready = await reachable(settings)
        entries = await read_dead_letters(ready)
        door = submit_door(ready)
        plan, _ = plan_redrive(entries, selection, door)
        known = await _known_to_view(settings, [submit.task_id for _, submit in plan])
        async with TaskstreamClient(ready) as client:
            return await redrive(entries, selection, client, known=known.__contains__, door=door)

    report = asyncio.run(go())
    for item in report.redriven:
        print(f"redriven   {item.task_id} -> {item.new_task_id}")
    for item in report.already_redriven:
        print(f"already    {item.task_id} -> {item.new_task_id}")
    for item in report.not_redrivable:
        print(f"skipped    {item.task_id or item.source}: {item.why}")
    for task_id in report.not_found:
        print(f"not found  {task_id}")
    print(f"{len(report.redriven)} redriven, {len(report.not_redrivable)} not redrivable")
    return 1 if report.not_found and not report.redriven else 0


def register(sub: Any) -> None:
    p = sub.add_parser("dlq", help="dead letters")
    dsub = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    d = dsub.add_parser("list", help="list dead letters")
    d.add_argument("--reason", default=None)
    d.add_argument("--client", default=None)
    d.add_argument("--limit", type=int, default=100)
    d.set_defaults(handler=_cmd_dlq_list)
    d = dsub.add_parser("redrive", help="re-submit dead-lettered tasks (repeating it adds nothing)")
    d.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    d.add_argument("--all", action="store_true")
    d.add_argument("--reason", default=None)
    d.add_argument("--client", default=None)
    d.add_argument("--operation", default=None)
    d.set_defaults(handler=_cmd_dlq_redrive)
