"""``/health`` and ``/metrics`` (Prometheus text) for a part that is not the HTTP view: the
processor, a delay agent, a worker. Off unless ``TASKSTREAM_METRICS_PORT`` (or a part's
``--metrics-port``) names a port; 0 picks a free one, which the part logs.

A part hands in two callables: ``health()`` (a JSON object; ``"status": "ok"`` or anything
else, which answers 503) and ``samples()`` (name, help, value, labels) read on every scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

Sample = tuple[str, str, float, dict[str, str]]
"""(metric name, help text, value, labels)."""


class _Samples(Collector):
    def __init__(self, part: str, samples: Callable[[], Iterable[Sample]]) -> None:
        self._part = part
        self._samples = samples
        self._started = time.time()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        up = GaugeMetricFamily(
            "taskstream_part_start_time_seconds", "When this part started", labels=["part"]
        )
        up.add_metric([self._part], self._started)
        yield up
        for name, help_text, value, labels in self._samples():
            keys = ["part", *sorted(labels)]
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, help_text, labels=keys)
            family.add_metric([self._part, *(labels[k] for k in sorted(labels))], value)
        yield from families.values()


class Observer:
    """The little HTTP server of one part."""

    def __init__(
        self,
        part: str,
        health: Callable[[], dict[str, Any]],
        samples: Callable[[], Iterable[Sample]],
    ) -> None:
        self.part = part
        self._health = health
        self.registry = CollectorRegistry()
        self.registry.register(_Samples(part, samples))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _get_health(self, request: web.Request) -> web.Response:
        try:
            body = {"part": self.part, **self._health()}
        except Exception as exc:  # a broken health probe is itself the answer
            body = {"part": self.part, "status": "error", "error": str(exc)}
        return web.json_response(body, status=200 if body.get("status") == "ok" else 503)

    async def _get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def start(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_get("/health", self._get_health)
        app.router.add_get("/metrics", self._get_metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("%s: /health and /metrics at http://%s:%d/", self.part, host, self.port)
        print(f"{self.part} metrics at http://{host}:{self.port}/metrics", flush=True)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def observe(
    settings: Any,
    part: str,
    health: Callable[[], dict[str, Any]],
    samples: Callable[[], Iterable[Sample]],
) -> Observer | None:
    """Start the part's observer when the settings give it a port; else None."""
    port = settings.metrics_port
    if port is None:
        return None
    observer = Observer(part, health, samples)
    await observer.start(settings.metrics_host, port)
    return observer
