"""``taskstream schedule``, ``template`` and ``steps``: recurring schedules, named task
templates, and the steps of a multi-step task."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from typing import Any

from streams.cli import args as conv
from streams.settings import Settings

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1}


def duration_ms(text: str) -> int:
    """``--every``: ``2s``, ``15m``, ``1h``, ``1d``, ``500ms`` or plain milliseconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 2s, 15m, 1h, 1d")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def _task(args: argparse.Namespace) -> dict[str, Any]:
    task: dict[str, Any] = dict(args.task or {})
    if args.operation is not None:
        task["operation"] = args.operation
    if args.payload is not None:
        task["payload"] = args.payload
    if args.priority is not None:
        task["priority"] = args.priority
    return task


def _cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.broker_address import reachable
    from streams.client import TaskstreamClient

    async def go() -> str:
        ready = await reachable(settings)
        async with TaskstreamClient(ready) as client:
            return await client.create_schedule(
                args.client,
                _task(args),
                cron=args.cron,
                interval_ms=args.every,
                timezone=args.timezone,
                start_at_ms=args.start_at_ms,
                end_at_ms=args.end_at_ms,
                missed=args.missed,
                template=args.template,
                schedule_id=args.schedule_id,
            )

    print(asyncio.run(go()))
    return 0


def _cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.broker_address import reachable
    from streams.client import TaskstreamClient
    from streams.view_client import view_get

    async def go() -> None:
        client_id = args.client
        if client_id is None:
            row = await view_get(settings, f"/schedules/{args.schedule_id}")
            client_id = str(row["client_id"])
        ready = await reachable(settings)
        async with TaskstreamClient(ready) as client:
            await client.delete_schedule(client_id, args.schedule_id)

    asyncio.run(go())
    print(f"delete sent for schedule {args.schedule_id}")
    return 0


def _when(ms: int | None) -> str:
    from projections.reader import iso_ms

    return iso_ms(ms) or "-"


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from streams.view_client import view_get

    params = {"client_id": args.client} if args.client else None
    body = asyncio.run(view_get(settings, "/schedules", params))
    if args.json:
        print(json.dumps(body["items"], indent=2))
        return 0
    for row in body["items"]:
        every = row["cron"] or f"every {row['interval_ms']} ms"
        print(
            f"{row['schedule_id']}  {row['state']:<8} {every} ({row['timezone']})  "
            f"next {_when(row['next_at_ms'])}  fired {row['fired']}  skipped {row['skipped']}"
        )
    return 0


def _cmd_template_define(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.broker_address import reachable
    from streams.client import TaskstreamClient

    async def go() -> None:
        ready = await reachable(settings)
        async with TaskstreamClient(ready) as client:
            await client.define_template(args.client, args.name, _task(args))

    asyncio.run(go())
    print(f"template {args.name} sent")
    return 0


def _cmd_template_delete(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.broker_address import reachable
    from streams.client import TaskstreamClient

    async def go() -> None:
        ready = await reachable(settings)
        async with TaskstreamClient(ready) as client:
            await client.delete_template(args.client, args.name)

    asyncio.run(go())
    print(f"delete sent for template {args.name}")
    return 0


def _cmd_template_list(args: argparse.Namespace, settings: Settings) -> int:
    from streams.view_client import view_get

    params = {"client_id": args.client} if args.client else None
    body = asyncio.run(view_get(settings, "/templates", params))
    for row in body["items"]:
        print(f"{row['client_id']}/{row['name']}  {json.dumps(row['task'], sort_keys=True)}")
    return 0


def _cmd_steps(args: argparse.Namespace, settings: Settings) -> int:
    from streams.view_client import view_get

    body = asyncio.run(view_get(settings, f"/tasks/{args.task_id}/steps"))
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"{body['task_id']}  {body['state']}")
    for step in body["steps"]:
        after = f" after {', '.join(step['depends_on'])}" if step["depends_on"] else ""
        detail = f"  {step['error']}" if step.get("error") else ""
        print(f"  {step['id']:<16} {step['status']:<10} {step['operation']}{after}{detail}")
    return 0


def _task_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--operation", default=None, help="the task's operation")
    p.add_argument("--payload", type=conv.json_object, default=None, help="the task's payload")
    p.add_argument("--priority", type=int, choices=range(1, 6), default=None)
    p.add_argument(
        "--task", type=conv.json_object, default=None, help="more SubmitTask fields as JSON"
    )


def register(sub: Any) -> None:
    """Add ``schedule``, ``template`` and ``steps`` to the ``taskstream`` parser."""
    p = sub.add_parser("schedule", help="recurring schedules: one task per occurrence")
    ssub = p.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    c = ssub.add_parser("create", help="create a schedule (cron or --every)")
    c.add_argument("--client", required=True, help="client id")
    when = c.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", default=None, help='five-field cron, e.g. "0 9 * * 1-5"')
    when.add_argument("--every", type=duration_ms, default=None, help="interval: 2s, 15m, 1h")
    c.add_argument("--timezone", default="UTC", help="IANA zone the cron is read in")
    c.add_argument("--start-at-ms", type=int, default=None)
    c.add_argument("--end-at-ms", type=int, default=None)
    c.add_argument(
        "--missed",
        choices=("run", "skip"),
        default="run",
        help="occurrences missed while no processor ran: run each once, or skip",
    )
    c.add_argument("--template", default=None, help="a template's name: the task's defaults")
    c.add_argument("--schedule-id", default=None, help="idempotency key (default: a new uuid)")
    _task_options(c)
    c.set_defaults(handler=_cmd_create)
    d = ssub.add_parser("delete", help="delete a schedule")
    d.add_argument("schedule_id")
    d.add_argument("--client", default=None, help="client id (default: asked of the view)")
    d.set_defaults(handler=_cmd_delete)
    ls = ssub.add_parser("list", help="list schedules (from the view)")
    ls.add_argument("--client", default=None)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=_cmd_list)

    t = sub.add_parser("template", help="named task templates: defaults for schedules")
    tsub = t.add_subparsers(dest="template_command", required=True, metavar="ACTION")
    td = tsub.add_parser("define", help="define or replace a template")
    td.add_argument("name")
    td.add_argument("--client", required=True)
    _task_options(td)
    td.set_defaults(handler=_cmd_template_define)
    tx = tsub.add_parser("delete", help="delete a template")
    tx.add_argument("name")
    tx.add_argument("--client", required=True)
    tx.set_defaults(handler=_cmd_template_delete)
    tl = tsub.add_parser("list", help="list templates (from the view)")
    tl.add_argument("--client", default=None)
    tl.set_defaults(handler=_cmd_template_list)

    st = sub.add_parser("steps", help="the steps of a multi-step task (from the view)")
    st.add_argument("task_id")
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=_cmd_steps)
