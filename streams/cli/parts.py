"""Each part of taskstream as a process of its own: ``taskstream processor``, ``delay``,
``notifier``, ``view``, ``worker``, ``demo``, and ``taskstream run``, which supervises them; a
deployment runs and scales each alone.

Every part runs under :func:`streams.runtime.signals.run_part`: it stops on SIGTERM/SIGINT
within a bound, and an unhandled error ends it with a non-zero exit code and a logged
traceback, never a silent half-alive process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from streams import part_metrics
from streams.cli import args as conv
from streams.errors import ConfigurationError
from streams.observe import observe
from streams.runtime.signals import run_part
from streams.settings import Settings


async def _ensure_topics(settings: Settings) -> None:
    from streams.kafka.topics import ensure_topics

    await ensure_topics(settings)


def run_processor(settings: Settings) -> int:
    from streams.distributor import Distributor
    from streams.runtime.runner import StreamRuntime

    async def body(stop: asyncio.Event) -> None:
        await _ensure_topics(settings)
        runtime: StreamRuntime[Any] = StreamRuntime(
            Distributor(settings), settings, name="processor", stop=stop
        )
        observer = await observe(
            settings,
            "processor",
            lambda: part_metrics.processor_health(runtime),
            lambda: part_metrics.processor_samples(runtime),
        )
        try:
            await runtime.run()
        finally:
            if observer is not None:
                await observer.stop()

    return run_part(body, name="processor", grace_s=10.0)


def run_delay(settings: Settings) -> int:
    from streams.delay import DelayAgent

    async def body(stop: asyncio.Event) -> None:
        await _ensure_topics(settings)
        agent = DelayAgent(settings)
        observer = await observe(
            settings,
            "delay",
            lambda: part_metrics.delay_health(agent),
            lambda: part_metrics.delay_samples(agent),
        )
        try:
            await agent.run(stop)
        finally:
            if observer is not None:
                await observer.stop()

    return run_part(body, name="delay", grace_s=8.0)


def run_notifier(settings: Settings) -> int:
    from streams.notifier import NotifierPart

    async def body(stop: asyncio.Event) -> None:
        await _ensure_topics(settings)
        notifier = NotifierPart(settings)
        observer = await observe(
            settings,
            "notifier",
            lambda: part_metrics.notifier_health(notifier),
            lambda: part_metrics.notifier_samples(notifier),
        )
        try:
            await notifier.run(stop)
        finally:
            if observer is not None:
                await observer.stop()

    return run_part(body, name="notifier", grace_s=8.0)


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

    return run_part(body, name="view", grace_s=8.0)


def run_worker(
    settings: Settings,
    executor_factory: Callable[[Settings], Any],
    closers: Sequence[Callable[[], Awaitable[None]]] = (),
) -> int:
    """Run one executor (sessions and/or the pool) until a signal; drains on the way out, then
    awaits ``closers`` (the handlers' HTTP sessions, the browser)."""

    async def body(stop: asyncio.Event) -> None:
        await _ensure_topics(settings)
        executor = executor_factory(settings)
        await executor.start()
        observer = await observe(
            settings,
            "worker",
            lambda: part_metrics.worker_health(executor),
            lambda: part_metrics.worker_samples(executor),
        )
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
            if observer is not None:
                await observer.stop()
            for close in closers:
                await close()

    return run_part(body, name="worker", grace_s=15.0)


def check_view_exposure(settings: Settings) -> None:
    """The view answers without a token only on loopback; anywhere else a token (not an empty
    one) or a tokens file is required."""
    import ipaddress

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


# --- the commands ----------------------------------------------------------------------------


def _metrics_port(args: argparse.Namespace, settings: Settings) -> Settings:
    """``--metrics-port`` over ``TASKSTREAM_METRICS_PORT``."""
    if getattr(args, "metrics_port", None) is None:
        return settings
    return settings.model_copy(update={"metrics_port": args.metrics_port})


def _add_metrics_port(p: Any) -> None:
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve /health and /metrics on this port (0: a free one, printed); "
        "default TASKSTREAM_METRICS_PORT, else off",
    )


def _cmd_processor(args: argparse.Namespace, settings: Settings) -> int:
    return run_processor(_metrics_port(args, settings))


def _cmd_delay(args: argparse.Namespace, settings: Settings) -> int:
    return run_delay(_metrics_port(args, settings))


def _cmd_notifier(args: argparse.Namespace, settings: Settings) -> int:
    return run_notifier(_metrics_port(args, settings))


def _cmd_view(args: argparse.Namespace, settings: Settings) -> int:
    return run_view(settings)


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.executor import Executor, SessionSpec
    from streams.executor.handlers import (
        BrowserAutomationHandler,
        GhlApiHandler,
        SimulatedGhlHandler,
        builtin_handlers,
        ghl_api_handlers,
        ghl_handlers,
    )
    from streams.executor.handlers.outbound import OutboundPolicy

    handlers: dict[str, Any] = {}
    closers: list[Callable[[], Awaitable[None]]] = []
    if args.simulated:
        handlers.update(
            ghl_handlers(SimulatedGhlHandler(scale=args.scale, failure_rate=args.failure_rate))
        )
    browser = None
    if args.browser is not None:
        from streams.executor.handlers.playwright_driver import PlaywrightBrowser

        args.browser.check()
        browser = PlaywrightBrowser(
            args.browser, outbound=OutboundPolicy.parse(settings.outbound_allow)
        )
        closers.append(browser.close)
        serve_browser = BrowserAutomationHandler(browser)
        handlers.update(browser_automation=serve_browser, data_extraction=serve_browser)
    if args.ghl:
        api = GhlApiHandler.from_settings(settings, required=True)
        closers.append(api.close)
        handlers.update(ghl_api_handlers(api))
    if args.builtin:
        builtin = builtin_handlers(settings, browser_driver=browser)
        closers.append(builtin.close)
        handlers.update(builtin)
    for loaded in args.handlers:
        handlers.update(loaded)
    if not handlers:
        raise ConfigurationError(
            "no handlers: give --handlers MODULE, --ghl, --browser, --builtin or --simulated"
        )
    sessions = [
        SessionSpec(s.session_id, s.client_id, args.agent_id, max_concurrent=s.max_concurrent)
        for s in args.session
    ]
    if not sessions and not args.pool:
        raise ConfigurationError("nothing to serve: give --session ... and/or --pool")

    def factory(s: Settings) -> Executor:
        return Executor(
            s, handlers=handlers, sessions=sessions, pool=args.pool, concurrency=args.concurrency
        )

    return run_worker(_metrics_port(args, settings), factory, closers)


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.demo import run_demo

    return run_demo(settings, rate_per_s=args.rate, failure_rate=args.failure_rate)


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.supervisor import Part, supervise

    check_view_exposure(settings)
    parts = [
        Part("processor", ["processor"]),
        Part("delay", ["delay"]),
        Part("notifier", ["notifier"]),
        Part("view", ["view"]),
    ]
    if args.demo:
        parts.append(Part("demo", ["demo", "--rate", str(args.rate)]))
    return supervise(settings, parts, apache_kafka=args.apache_kafka)


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
    _add_metrics_port(p)
    p.set_defaults(handler=_cmd_processor)

    p = sub.add_parser("delay", help="run a delay agent for the retry tiers")
    _add_metrics_port(p)
    p.set_defaults(handler=_cmd_delay)

    p = sub.add_parser(
        "notifier", help="send the notifyOnComplete / notifyOnFailure notices of task outcomes"
    )
    _add_metrics_port(p)
    p.set_defaults(handler=_cmd_notifier)

    p = sub.add_parser("view", help="run a projector and the HTTP view")
    p.set_defaults(handler=_cmd_view)

    p = sub.add_parser("worker", help="run an executor with handlers from a module")
    p.add_argument(
        "--handlers", type=conv.handlers, action="append", default=[], metavar="MODULE[:NAME]"
    )
    p.add_argument(
        "--session", type=conv.session, action="append", default=[], metavar="SESSION:CLIENT[:MAX]"
    )
    p.add_argument("--agent-id", default="agent")
    _add_metrics_port(p)
    p.add_argument("--pool", action="store_true", help="also serve the shared pool")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--simulated", action="store_true", help="add simulated GHL handlers")
    p.add_argument(
        "--ghl",
        action="store_true",
        help="add the GoHighLevel v2 handlers of every catalog operation with an API "
        "(needs TASKSTREAM_GHL_CREDENTIALS_FILE)",
    )
    p.add_argument(
        "--browser",
        type=conv.browser,
        default=None,
        metavar="chromium[:PATH]|cdp:WS_URL",
        help="run browser_automation / data_extraction in a Playwright browser: a local "
        "Chromium (default /usr/bin/chromium) or a remote one over CDP (e.g. Browserbase); "
        "needs the browser extra: pip install 'taskstream[browser]'",
    )
    p.add_argument(
        "--builtin",
        action="store_true",
        help="add the seed-001 built-in handlers (with --browser: the browser types in it)",
    )
    p.add_argument("--scale", type=float, default=0.05, help="simulated duration scale")
    p.add_argument("--failure-rate", type=float, default=0.0)
    p.set_defaults(handler=_cmd_worker)

    p = sub.add_parser("demo", help="simulated sessions plus a steady mix of GHL tasks")
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--failure-rate", type=float, default=0.05)
    p.set_defaults(handler=_cmd_demo)
