"""Running a part from a command line: signals, a bounded stop, a clear exit code.

The one "run until signalled" helper of every part (processor, delay agent, view, executor,
demo): :func:`run_part` from synchronous code, :func:`run_until_signalled` inside a loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable

__all__ = ["run_part", "run_until_signalled"]

log = logging.getLogger(__name__)


async def run_until_signalled(
    work: Callable[[asyncio.Event], Awaitable[None]],
    *,
    name: str,
    grace_s: float = 10.0,
) -> int:
    """Run ``work(stop)``; SIGTERM/SIGINT set ``stop``. Return the process exit code.

    A stop that takes longer than ``grace_s`` (or a second signal) cancels the work: the
    current batch is abandoned, which recovery handles like a crash. An error is logged with
    its traceback and gives exit code 1: a processor never lingers as a silent consumer.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.ensure_future(work(stop))
    forced = False

    def force() -> None:
        nonlocal forced
        if not task.done():
            forced = True
            log.warning("%s: not stopped within %.0fs; abandoning the current batch", name, grace_s)
            task.cancel()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            force()
            return
        log.info("%s: %s received; stopping", name, signal.Signals(signum).name)
        stop.set()
        loop.call_later(grace_s, force)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await task
    except asyncio.CancelledError:
        if not forced:
            raise
        return 0
    except Exception:
        log.critical("%s: stopped by an unhandled error; exiting", name, exc_info=True)
        return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


def run_part(
    work: Callable[[asyncio.Event], Awaitable[None]], *, name: str, grace_s: float = 10.0
) -> int:
    """``run_until_signalled`` in a fresh event loop: the body of a part's process.

    What the process holds by now (modules, schemas, settings) lives as long as it does:
    ``gc.freeze`` takes it out of the cyclic collector's scans, which otherwise walk those
    objects on every full collection (about 9 % of the runtime's CPU per event)."""
    gc.freeze()
    return asyncio.run(run_until_signalled(work, name=name, grace_s=grace_s))
