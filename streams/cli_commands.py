"""Sub-commands of ``taskstream`` beyond ``broker``: the parts, the supervisor, operator tools."""

from __future__ import annotations

import argparse
import asyncio
import importlib
from typing import Any

from schemas.errors import TaskstreamError
from streams.errors import ConfigurationError
from streams.settings import Settings


def _cmd_processor(args: argparse.Namespace, settings: Settings) -> int:
    from streams.parts import run_processor

    return run_processor(settings)


def _cmd_delay(args: argparse.Namespace, settings: Settings) -> int:
    from streams.parts import run_delay

    return run_delay(settings)


def _cmd_view(args: argparse.Namespace, settings: Settings) -> int:
    from streams.parts import run_view

    return run_view(settings)


def _parse_session(text: str, agent_id: str) -> Any:
    from streams.executor import SessionSpec

    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ConfigurationError(
            f"--session {text!r}: expected SESSION_ID:CLIENT_ID or SESSION_ID:CLIENT_ID:MAX_CONCURRENT"
        )
    try:
        limit = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise ConfigurationError(f"--session {text!r}: MAX_CONCURRENT must be a number") from None
    return SessionSpec(parts[0], parts[1], agent_id, max_concurrent=limit)


def load_handlers(spec: str) -> dict[str, Any]:
    """``package.module`` (its ``HANDLERS`` mapping) or ``package.module:name`` (a mapping, or a
    function returning one)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import handler module {module_name!r}: {exc}") from None
    target = getattr(module, attr or "HANDLERS", None)
    if target is None:
        raise ConfigurationError(f"{module_name} has no {attr or 'HANDLERS'}")
    handlers = target() if callable(target) else target
    if not isinstance(handlers, dict) or not handlers:
        raise ConfigurationError(f"{spec} must be a non-empty dict of operation -> handler")
    return handlers


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.executor import Executor
    from streams.executor.handlers import SimulatedGhlHandler, builtin_handlers, ghl_handlers
    from streams.parts import run_worker

    handlers: dict[str, Any] = {}
    if args.simulated:
        handlers.update(
            ghl_handlers(SimulatedGhlHandler(scale=args.scale, failure_rate=args.failure_rate))
        )
    if args.builtin:
        handlers.update(builtin_handlers(settings))
    for spec in args.handlers:
        handlers.update(load_handlers(spec))
    if not handlers:
        raise ConfigurationError("no handlers: give --handlers MODULE, --simulated or --builtin")
    sessions = [_parse_session(s, args.agent_id) for s in args.session]
    if not sessions and not args.pool:
        raise ConfigurationError("nothing to serve: give --session ... and/or --pool")

    def factory(s: Settings) -> Executor:
        return Executor(
            s, handlers=handlers, sessions=sessions, pool=args.pool, concurrency=args.concurrency
        )

    return run_worker(settings, factory)


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.demo import run_demo

    return run_demo(settings, rate_per_s=args.rate, failure_rate=args.failure_rate)


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.parts import check_view_exposure
    from streams.supervisor import Part, supervise

    check_view_exposure(settings)
    parts = [
        Part("processor", ["processor"]),
        Part("delay", ["delay"]),
        Part("view", ["view"]),
    ]
    if args.demo:
        parts.append(Part("demo", ["demo", "--rate", str(args.rate)]))
    return supervise(settings, parts, apache_kafka=args.apache_kafka)


def _cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from api.service import rebuild_with_progress_bar

    report = rebuild_with_progress_bar(settings)
    print(f"rebuilt the projection: {report}")
    return 0


def _cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli import _parse_json_object
    from streams.client import TaskstreamClient
    from streams.ops import check_operation, reachable

    payload = _parse_json_object(args.payload, "--payload")
    check_operation(settings, args.operation)

    async def go() -> str:
        ready = await reachable(settings)
        async with TaskstreamClient(ready) as client:
            return await client.submit(
                args.client,
                args.operation,
                payload,
                task_id=args.task_id,
                priority=args.priority,
                max_retries=args.max_retries,
                timeout_ms=args.timeout_ms,
                scheduled_for_ms=args.scheduled_for_ms,
                requires_review=args.review,
                depends_on=args.depends_on,
                capabilities=args.capability,
            )

    print(asyncio.run(go()))
    return 0


def _cmd_steer(args: argparse.Namespace, settings: Settings) -> int:
    """cancel / approve / reject / expedite: the client id comes from the view unless given."""
    from streams.client import TaskstreamClient
    from streams.ops import client_of, reachable

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
    from streams.ops import format_status, format_task, view_get

    if args.task_id:
        print(format_task(asyncio.run(view_get(settings, f"/tasks/{args.task_id}"))))
    else:
        print(format_status(asyncio.run(view_get(settings, "/status"))))
    return 0


def _cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops import tail

    try:
        asyncio.run(tail(settings, print, from_beginning=args.from_beginning, limit=args.limit))
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops import table, view_get

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
    from streams.ops import NotFoundError, view_get

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

    from streams.client import TaskstreamClient
    from streams.ops import reachable
    from streams.redrive import Selection, plan_redrive, read_dead_letters, redrive

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
        plan, _ = plan_redrive(entries, selection)
        known = await _known_to_view(settings, [submit.task_id for _, submit in plan])
        async with TaskstreamClient(ready) as client:
            return await redrive(entries, selection, client, known=known.__contains__)

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
    p = sub.add_parser(
        "run", help="run everything (embedded broker unless KAFKA_BOOTSTRAP_SERVERS)"
    )
    p.add_argument(
        "--demo", action="store_true", help="add simulated sessions and a steady task mix"
    )
    p.add_argument("--rate", type=float, default=5.0, help="demo tasks per second (default 5)")
    p.add_argument(
        "--apache-kafka",
        action="store_true",
        help="without KAFKA_BOOTSTRAP_SERVERS, run a local Apache Kafka (data under the data "
        "dir, kept across restarts) instead of the memory-only embedded broker",
    )
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser(
        "processor", help="run the distributor processor (one consumer-group member)"
    )
    p.set_defaults(handler=_cmd_processor)

    p = sub.add_parser("delay", help="run a delay agent for the retry tiers")
    p.set_defaults(handler=_cmd_delay)

    p = sub.add_parser("view", help="run a projector and the HTTP view")
    p.set_defaults(handler=_cmd_view)

    p = sub.add_parser("worker", help="run an executor with handlers from a module")
    p.add_argument("--handlers", action="append", default=[], metavar="MODULE[:NAME]")
    p.add_argument("--session", action="append", default=[], metavar="SESSION:CLIENT[:MAX]")
    p.add_argument("--agent-id", default="agent")
    p.add_argument("--pool", action="store_true", help="also serve the shared pool")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--simulated", action="store_true", help="add simulated GHL handlers")
    p.add_argument("--builtin", action="store_true", help="add the seed-001 built-in handlers")
    p.add_argument("--scale", type=float, default=0.05, help="simulated duration scale")
    p.add_argument("--failure-rate", type=float, default=0.0)
    p.set_defaults(handler=_cmd_worker)

    p = sub.add_parser("demo", help="simulated sessions plus a steady mix of GHL tasks")
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--failure-rate", type=float, default=0.05)
    p.set_defaults(handler=_cmd_demo)

    p = sub.add_parser("submit", help="submit a task")
    p.add_argument("operation")
    p.add_argument("--client", required=True, help="client id (routes to its sessions)")
    p.add_argument("--payload", default="{}", help="JSON object")
    p.add_argument("--task-id", default=None, help="idempotency key (default: a new uuid)")
    p.add_argument("--priority", type=int, choices=range(1, 6), default=None)
    p.add_argument("--max-retries", type=int, default=None)
    p.add_argument("--timeout-ms", type=int, default=None)
    p.add_argument("--scheduled-for-ms", type=int, default=None)
    p.add_argument("--review", action="store_true", help="hold for human review")
    p.add_argument("--depends-on", action="append", default=[], metavar="TASK_ID")
    p.add_argument("--capability", action="append", default=[])
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

    p = sub.add_parser("tail", help="follow task.events, one readable line per event")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="stop after N events")
    p.set_defaults(handler=_cmd_tail)

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

    p = sub.add_parser("projections", help="read-side maintenance")
    psub = p.add_subparsers(dest="projections_command", required=True, metavar="ACTION")
    r = psub.add_parser("rebuild", help="drop the projection and replay task.events")
    r.set_defaults(handler=_cmd_rebuild)
