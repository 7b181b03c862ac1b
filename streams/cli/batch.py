"""``taskstream batch submit FILE``: submit a batch job and follow its progress in the view.

FILE holds the items as a JSON array or as JSON lines (``-`` reads standard input). An item
is ``{"payload": {...}}`` with an optional ``"task_id"``; any other JSON object is taken as
the payload itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.errors import TaskstreamError
from streams.errors import ConfigurationError
from streams.settings import Settings

FINAL_STATES = ("completed", "failed", "rejected")


def parse_items(text: str, source: str = "FILE") -> list[dict[str, Any]]:
    """The items of a batch file (a JSON array, or one JSON object per line)."""
    stripped = text.strip()
    if not stripped:
        raise ConfigurationError(f"{source} holds no items")
    documents: list[Any]
    if stripped.startswith("["):
        try:
            documents = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}"
            ) from None
    else:
        documents = []
        for number, line in enumerate(stripped.splitlines(), 1):
            if not line.strip():
                continue
            try:
                documents.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigurationError(
                    f"{source} line {number} is not valid JSON: {exc.msg}"
                ) from None
    items: list[dict[str, Any]] = []
    for number, doc in enumerate(documents, 1):
        if not isinstance(doc, dict):
            raise ConfigurationError(
                f"{source} item {number} must be a JSON object, got {type(doc).__name__}"
            )
        if "payload" in doc and set(doc) <= {"payload", "task_id"}:
            items.append(doc)
        else:
            items.append({"payload": doc})
    return items


async def follow(
    settings: Settings,
    batch_job_id: str,
    total: int,
    *,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Show a progress bar fed by ``GET /batch-jobs/{id}`` until the job is final."""
    from tqdm import tqdm

    from streams.view_client import NotFoundError, view_get

    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    bar = tqdm(total=total, unit="item", desc=batch_job_id, file=sys.stderr, dynamic_ncols=True)
    try:
        while True:
            try:
                row: dict[str, Any] = await view_get(settings, f"/batch-jobs/{batch_job_id}")
            except NotFoundError:
                row = {}  # the view has not seen the job yet
            processed = int(row.get("processed", 0))
            if processed > bar.n:
                bar.update(processed - bar.n)
            if row:
                bar.set_postfix(
                    succeeded=row.get("succeeded", 0),
                    failed=row.get("failed", 0),
                    running=row.get("running", 0),
                    refresh=False,
                )
            if row.get("state") in FINAL_STATES:
                return row
            if deadline is not None and loop.time() > deadline:
                raise TaskstreamError(
                    f"batch job {batch_job_id} not finished after {timeout_s:.0f}s "
                    f"({processed}/{total} processed); it keeps running"
                )
            await asyncio.sleep(poll_s)
    finally:
        bar.close()


def summary(row: dict[str, Any]) -> str:
    if row.get("state") == "rejected":
        return f"batch job {row.get('batch_job_id')} rejected: {row.get('reason')}"
    return (
        f"batch job {row.get('batch_job_id')} {row.get('state')}: {row.get('total')} items, "
        f"{row.get('succeeded')} succeeded, {row.get('failed')} failed"
    )


def _cmd_batch_submit(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.broker_address import reachable
    from streams.cli.tasks import check_operation
    from streams.client import TaskstreamClient

    if args.file == "-":
        text, source = sys.stdin.read(), "standard input"
    else:
        try:
            text, source = Path(args.file).read_text(encoding="utf-8"), args.file
        except OSError as exc:
            raise ConfigurationError(f"cannot read {args.file}: {exc.strerror}") from None
    items = parse_items(text, source)
    check_operation(settings, args.operation)

    async def go() -> dict[str, Any] | None:
        ready = await reachable(settings)
        async with TaskstreamClient(ready) as client:
            batch_job_id = await client.submit_batch_job(
                args.client,
                args.operation,
                items,
                batch_job_id=args.batch_job_id,
                parallelism=args.parallelism,
                priority=args.priority,
                max_retries=args.max_retries,
                timeout_ms=args.timeout_ms,
            )
        print(batch_job_id)
        if args.no_follow:
            return None
        return await follow(settings, batch_job_id, len(items), timeout_s=args.wait_timeout)

    finished = asyncio.run(go())
    if finished is None:
        return 0
    print(summary(finished))
    if args.results:
        Path(args.results).write_text(
            json.dumps(finished.get("results", {}), indent=2, sort_keys=True) + "\n",
            encoding="utf-8",
        )
    return 0 if finished.get("state") == "completed" else 1


def _cmd_batch_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from urllib.parse import quote

    from streams.cli.broker_address import reachable
    from streams.client import TaskstreamClient
    from streams.view_client import view_get

    async def go() -> None:
        client_id = args.client
        if client_id is None:
            row = await view_get(settings, "/batch-jobs/" + quote(args.batch_job_id, safe=""))
            client_id = str(row["client_id"])
        ready = await reachable(settings)
        async with TaskstreamClient(ready) as client:
            await client.cancel_batch_job(client_id, args.batch_job_id, reason=args.reason)

    asyncio.run(go())
    print(f"cancel sent for batch job {args.batch_job_id}")
    return 0


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """``batch list`` (batch jobs) and ``batch batches`` (dispatched batches): one line each."""
    from streams.view_client import view_get

    jobs = args.batch_command == "list"
    params = {
        "client_id": args.client,
        "status": args.status,
        "limit": args.limit,
        "cursor": args.cursor,
    }
    page = asyncio.run(
        view_get(
            settings,
            "/batch-jobs" if jobs else "/batches",
            {k: str(v) for k, v in params.items() if v is not None},
        )
    )
    for row in page["items"]:
        if jobs:
            print(
                f"{row['batch_job_id']}  {row['state']}  {row['client_id']}  "
                f"{row['processed']}/{row['total']} processed, {row['failed']} failed"
            )
        else:
            print(
                f"{row['batch_id']}  {row['state']}  {row['client_id']}  "
                f"{row['operation']}  {len(row['task_ids'])} tasks"
            )
    if page.get("next_cursor"):
        print(f"next page: --cursor {page['next_cursor']}")
    return 0


def register(sub: Any) -> None:
    """Add ``batch submit``, ``cancel``, ``list`` and ``batches`` to the sub-command parser."""
    p = sub.add_parser("batch", help="batch jobs: many items, bounded parallelism")
    bsub = p.add_subparsers(dest="batch_command", required=True, metavar="ACTION")
    s = bsub.add_parser(
        "submit",
        help="submit a batch job from FILE (JSON array or JSON lines) and follow its progress",
    )
    s.add_argument("file", metavar="FILE", help="items file, or - for standard input")
    s.add_argument("--client", required=True, help="client id (routes to its sessions)")
    s.add_argument("--operation", required=True, help="the operation every item runs")
    s.add_argument("--parallelism", type=int, default=5, help="unfinished items at most")
    s.add_argument("--batch-job-id", default=None, help="idempotency key (default: a new uuid)")
    s.add_argument("--priority", type=int, choices=range(1, 6), default=None)
    s.add_argument("--max-retries", type=int, default=None)
    s.add_argument("--timeout-ms", type=int, default=None, help="per item")
    s.add_argument("--no-follow", action="store_true", help="print the job id and exit")
    s.add_argument("--wait-timeout", type=float, default=None, help="stop following after S s")
    s.add_argument("--results", default=None, metavar="PATH", help="write per-item results")
    s.set_defaults(handler=_cmd_batch_submit)
    c = bsub.add_parser("cancel", help="cancel a batch job (unfinished items are cancelled)")
    c.add_argument("batch_job_id", metavar="BATCH_JOB_ID")
    c.add_argument("--client", default=None, help="client id (default: looked up in the view)")
    c.add_argument("--reason", default=None)
    c.set_defaults(handler=_cmd_batch_cancel)
    for name, text in (("list", "list batch jobs"), ("batches", "list dispatched batches")):
        ls = bsub.add_parser(name, help=text)
        ls.add_argument("--client", default=None, help="only this client's")
        ls.add_argument("--status", default=None, help="only in this state")
        ls.add_argument("--limit", type=int, default=100)
        ls.add_argument("--cursor", default=None, help="next page (from the previous output)")
        ls.set_defaults(handler=_cmd_list)
