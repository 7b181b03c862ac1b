"""``taskstream projections rebuild``: drop the read model and replay ``task.events``."""

from __future__ import annotations

import argparse
from typing import Any

from streams.settings import Settings


def _cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from api.service import rebuild_with_progress_bar

    report = rebuild_with_progress_bar(settings)
    print(f"rebuilt the projection: {report}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("projections", help="read-side maintenance")
    psub = p.add_subparsers(dest="projections_command", required=True, metavar="ACTION")
    r = psub.add_parser("rebuild", help="drop the projection and replay task.events")
    r.set_defaults(handler=_cmd_rebuild)
