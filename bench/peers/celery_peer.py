"""Celery peer of ``taskstream bench --peers``: no-op tasks through Celery on Redis.

The app below is what the worker process loads (``celery -A celery_peer worker``, run from this
directory); :func:`measure` is the producer side, run in the bench's own process. Celery keeps its
defaults except the broker and result backend URLs (both Redis) and the worker's pool (prefork,
one child per core), as a Python team would start it.

Full lifecycle like the other rows: ``apply_async`` → a worker runs the task → its result is in
the backend, where the producer reads it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.result import ResultSet

REDIS_URL = os.environ.get("TASKSTREAM_PEER_REDIS_URL", "redis://127.0.0.1:6379")

app = Celery("celery_peer", broker=f"{REDIS_URL}/0", backend=f"{REDIS_URL}/1")


@app.task(name="noop")
def noop(sent_at: float) -> float:
    """Nothing to do; returns when it finished so the producer can compute the latency."""
    return time.time()


def _percentile(sorted_ms: list[float], p: float) -> float | None:
    if not sorted_ms:
        return None
    index = min(len(sorted_ms) - 1, max(0, int(-(-p * len(sorted_ms) // 100)) - 1))
    return sorted_ms[index]


def throughput(tasks: int, timeout_s: float = 600.0) -> dict[str, Any]:
    """Send ``tasks`` no-op tasks one ``apply_async`` at a time and wait for every result."""
    started = time.perf_counter()
    results = [noop.apply_async((0.0,)) for _ in range(tasks)]
    ResultSet(results).get(timeout=timeout_s, propagate=True)  # join_native on Redis
    seconds = time.perf_counter() - started
    return {"tasks": tasks, "seconds": seconds, "tasks_per_s": tasks / seconds}


def latency(rate: float, seconds: float, timeout_s: float = 60.0) -> dict[str, Any]:
    """Send at ``rate`` tasks/s for ``seconds`` s; submit→finished per task (one clock)."""
    total = max(1, round(rate * seconds))
    sent: list[tuple[float, Any]] = []
    started = time.perf_counter()
    for i in range(total):
        wait = started + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        now = time.time()
        sent.append((now, noop.apply_async((now,))))
    finished = ResultSet([result for _, result in sent]).get(timeout=timeout_s)
    samples = [
        (float(end) - sent_at) * 1000.0 for (sent_at, _), end in zip(sent, finished, strict=True)
    ]
    samples.sort()
    return {
        "rate": rate,
        "tasks": total,
        "completed": len(samples),
        "p50_ms": _percentile(samples, 50),
        "p99_ms": _percentile(samples, 99),
    }
