"""Entry points for the CLI: the projector + HTTP view process, and an offline rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tqdm import tqdm

from api.projector import Projector, RebuildReport, rebuild
from streams.client import TaskstreamClient
from streams.settings import Settings

from .view import serve

log = logging.getLogger(__name__)


async def run(settings: Settings) -> None:
    """Project ``task.events`` and serve the view and the command gateway until cancelled; if
    either part stops on an error, stop the other and raise it (a projector that cannot fold
    must not keep serving)."""
    commands = TaskstreamClient(settings)
    await commands.start()
    try:
        await _project_and_serve(settings, commands)
    finally:
        await commands.close()


async def _project_and_serve(settings: Settings, commands: TaskstreamClient) -> None:
    projector = Projector(settings)
    await projector.start()
    folding = asyncio.create_task(projector.wait(), name="projector-wait")
    serving = asyncio.create_task(serve(settings, projector, commands), name="view")
    try:
        done, _ = await asyncio.wait({folding, serving}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in (serving, folding):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await projector.stop()


def rebuild_with_progress_bar(settings: Settings) -> RebuildReport:
    """Drop the local projection store and replay the whole event log, drawing a tqdm bar."""
    with tqdm(desc="rebuilding projection", unit="ev", unit_scale=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        report = asyncio.run(rebuild(settings, progress))
    log.info("projection rebuilt: %d events from %d partitions", report.events, report.partitions)
    return report
