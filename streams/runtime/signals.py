"""Running a part from a command line: signals, a bounded stop, a clear exit code.

The one "run until signalled" helper of every part (processor, delay agent, view, executor,
demo): :func:`run_part` from synchronous code, :func:`run_until_signalled` inside a loop.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from streams.errors import ConfigurationError

__all__ = [
    "EVENT_LOOP_ENV",
    "PART_GC_THRESHOLDS",
    "loop_factory",
    "run_part",
    "run_until_signalled",
    "tune_collector",
]

log = logging.getLogger(__name__)

# The cyclic collector's thresholds in a part's process (CPython's are 700, 10, 10). A part
# makes thousands of short-lived objects per cycle (records, events, models, futures) that
# reference counting frees; those alive at a young collection are walked (and those alive at
# the tenth, walked again), so with a threshold of 700 a part ran a young collection every
# few hundred tasks and spent most of its collection time on objects that were about to die
# anyway. 20,000 net allocations between young collections leaves the older generations'
# cadence (every 10th) as it was. Measured in `taskstream bench --only stack` on Apache Kafka
# (2026-12-03; README, Benchmarks): collection time per run went 0.42-0.53 -> 0.08 s in the
# processor, 1.19-1.37 -> 0.14-0.15 s in the view and 1.00-1.39 -> 0.07-0.10 s in the executor.
# Cyclic garbage waits for at most 20,000 allocations longer: a few megabytes.
PART_GC_THRESHOLDS = (20_000, 10, 10)


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


def tune_collector() -> None:
    """Tune the cyclic collector of a long-running process that holds what it has loaded.

    What the process holds by now (modules, schemas, settings) lives as long as it does:
    ``gc.freeze`` takes it out of the collector's scans, which otherwise walk those objects
    on every full collection (about 9 % of the runtime's CPU per event). Then the young
    collections get ``PART_GC_THRESHOLDS``."""
    gc.freeze()
    gc.set_threshold(*PART_GC_THRESHOLDS)


# Which event loop a part runs on: ``uvloop`` (the default where it is installed, as it is on
# Linux and macOS with taskstream's dependencies) or ``asyncio`` (the standard library's).
EVENT_LOOP_ENV = "TASKSTREAM_EVENT_LOOP"
_EVENT_LOOPS = ("uvloop", "asyncio")


def loop_factory(
    environ: dict[str, str] | None = None,
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The new-loop function of the event loop ``TASKSTREAM_EVENT_LOOP`` names; None for the
    standard library's. Unset, uvloop where it is installed: a part spends its time in
    callbacks and socket reads on the loop (aiokafka's sender and fetcher, the view's
    HTTP), and uvloop runs those in C. In `taskstream bench --only stack` on Apache Kafka
    (2026-12-03, three pairs in turn) the half-rate p99 of conversation_send went
    186 / 166 / 253 -> 155 / 123 / 92 ms, with the same throughput."""
    env = os.environ if environ is None else environ
    wanted = env.get(EVENT_LOOP_ENV, "").strip().lower()
    if wanted and wanted not in _EVENT_LOOPS:
        raise ConfigurationError(
            f"{EVENT_LOOP_ENV}={wanted!r}: expected one of {', '.join(_EVENT_LOOPS)}"
        )
    if wanted == "asyncio":
        return None
    if importlib.util.find_spec("uvloop") is None:
        if wanted == "uvloop":
            raise ConfigurationError(f"{EVENT_LOOP_ENV}=uvloop, but uvloop is not installed")
        return None
    import uvloop

    return uvloop.new_event_loop


def run_part(
    work: Callable[[asyncio.Event], Awaitable[None]], *, name: str, grace_s: float = 10.0
) -> int:
    """``run_until_signalled`` in a fresh event loop (:func:`loop_factory`'s): the body of a
    part's process, with the cyclic collector tuned for it (:func:`tune_collector`)."""
    try:
        factory = loop_factory()
    except ConfigurationError as exc:
        log.critical("%s: %s", name, exc)
        return 2
    tune_collector()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_until_signalled(work, name=name, grace_s=grace_s))
