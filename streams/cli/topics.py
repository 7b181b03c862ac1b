"""``taskstream topics create`` and ``taskstream topics check``: the topic layout, first.

Upstream teams run ``topics create`` before anything produces (a producer that comes first makes
the broker auto-create ``task.commands`` with its own partition count); ``topics check`` says
whether the layout is usable and, when it is not, what to run or set. Both exit 1 while a
problem remains.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streams.kafka.topics import LayoutReport, check_topics, create_topics, topic_layout
from streams.settings import Settings


def render(settings: Settings, report: LayoutReport) -> str:
    from streams.cli.render import table

    rows = []
    for spec in topic_layout(settings):
        count = report.counts.get(spec.name)
        if spec.name in report.created:
            status = "created"
        elif spec.name in report.grown:
            status = "grown"
        elif count is None:
            status = "missing"
        else:
            status = "ok"
        rows.append([spec.name, "-" if count is None else str(count), str(spec.partitions), status])
    lines = [table(rows, ["topic", "partitions", "configured", "status"])]
    lines += [f"warning: {w}" for w in report.warnings]
    lines += [f"problem: {p}" for p in report.problems]
    lines.append("layout ok" if report.ok else f"{len(report.problems)} problem(s)")
    return "\n".join(lines)


def _cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.broker_address import reachable

    async def go() -> LayoutReport:
        ready = await reachable(settings)
        if args.topics_command == "create":
            return await create_topics(ready)
        return await check_topics(ready)

    report = asyncio.run(go())
    print(render(settings, report))
    return 0 if report.ok else 1


def register(sub: Any) -> None:
    p = sub.add_parser("topics", help="create or check the topic layout (before producing)")
    tsub = p.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    c = tsub.add_parser(
        "create",
        help="create missing topics; grow delay tiers, and commands/events while no state exists",
    )
    c.set_defaults(handler=_cmd_topics)
    k = tsub.add_parser("check", help="report the layout and how to fix what is wrong")
    k.set_defaults(handler=_cmd_topics)
