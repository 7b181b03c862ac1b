"""Each part of taskstream as a process of its own: processor, delay agents, projector + view,
executors. ``taskstream run`` supervises them; a deployment runs and scales each alone.

Every part stops on SIGTERM/SIGINT within a bound, and an unhandled error ends it with a
non-zero exit code and a logged traceback, never a silent half-alive process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from streams.settings import Settings

log = logging.getLogger(__name__)


async def _until_signal(
    body: Callable[[asyncio.Event], Coroutine[Any, Any, None]], grace_s: float
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(body(stop))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        stopper.cancel()
        exc = task.exception()
        if exc is not None:
            log.critical("stopped by an unhandled error", exc_info=exc)
            return 1
        return 0
    try:
        await asyncio.wait_for(task, timeout=grace_s)
    except TimeoutError:
        log.error("did not stop within %.0fs; abandoning in-flight work", grace_s)
        return 1
    except Exception:
        log.critical("stopped by an unhandled error", exc_info=True)
        return 1
    return 0


def run_part(
    body: Callable[[asyncio.Event], Coroutine[Any, Any, None]], grace_s: float = 8.0
) -> int:
    return asyncio.run(_until_signal(body, grace_s))


async def _ensure_topics(settings: Settings) -> None:
    from streams.topics import ensure_topics

    await ensure_topics(settings)


def run_processor(settings: Settings) -> int:
    from streams.distributor import Distributor
    from streams.runtime import main_process

    asyncio.run(_ensure_topics(settings))
    return main_process(lambda s: Distributor(s), settings, name="processor")


def run_delay(settings: Settings) -> int:
    from streams.delay import DelayAgent

    async def body(stop: asyncio.Event) -> None:
        await _ensure_topics(settings)
        await DelayAgent(settings).run(stop)

    return run_part(body)


def run_view(settings: Settings) -> int:
    from api import service

    check_view_exposure(settings)

    async def body(stop: asyncio.Event) -> None:
        await _ensure_topics(settings)
        serving = asyncio.create_task(service.run(settings))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({serving, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                serving.result()
        finally:
            for task in (serving, stopper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return run_part(body)


def run_worker(settings: Settings, executor_factory: Callable[[Settings], Any]) -> int:
    """Run one executor (sessions and/or the pool) until a signal; drains on the way out."""

    async def body(stop: asyncio.Event) -> None:
        await _ensure_topics(settings)
        executor = executor_factory(settings)
        await executor.start()
        waiting = asyncio.create_task(executor.wait())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({waiting, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                waiting.result()
        finally:
            stopper.cancel()
            waiting.cancel()
            await executor.stop()

    return run_part(body, grace_s=15.0)


def check_view_exposure(settings: Settings) -> None:
    """The view answers without a token only on loopback; anywhere else a token (not an empty
    one) or a tokens file is required."""
    import ipaddress

    from streams.errors import ConfigurationError

    host = settings.http_host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    token = settings.http_token.get_secret_value() if settings.http_token else ""
    if not loopback and not token and settings.http_tokens_file is None:
        raise ConfigurationError(
            f"the HTTP view binds to {host}, which is not a loopback address: "
            "set TASKSTREAM_HTTP_TOKEN (an admin token) or TASKSTREAM_HTTP_TOKENS_FILE "
            "(per-client tokens) to require a bearer token"
        )
    if settings.http_tokens_file is not None:
        from api.access import load_tokens_file

        load_tokens_file(settings.http_tokens_file)  # a bad file stops the start, naming it
