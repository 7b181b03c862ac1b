"""``taskstream bench --peers``: BullMQ and Celery on Redis, in the same run as our rows.

Both peers do the same no-op work as the whole-stack row (submit → a worker runs it → the result
is recorded) on a Redis this module starts on loopback with no persistence (Debian's
``redis-server``): BullMQ with one worker of concurrency 8 (``bench/peers/bullmq_bench.mjs``),
Celery with a prefork worker of one child per core (``bench/peers/celery_peer.py``). Each peer
reports its max rate and its submit→completed latency at half that rate. A peer whose runtime is
missing (no ``redis-server``, ``node``, or ``celery``) is a "not installed" row saying how to get
it; the other rows still run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import BenchResult, load_average

__all__ = ["PEER_ROWS", "as_dict", "format_peers", "peers_dir", "ratios", "run_peers"]

PEER_ROWS = ("bullmq", "bullmq-priority", "celery")

# Our rows the peers are compared with, by (broker, row): the whole stack first.
_OURS = (("stack", "whole stack"), ("lifecycle", "processor lifecycle"))


def peers_dir() -> Path:
    """``bench/peers`` of the source checkout: searched upward from this file, so the module
    works both inside ``streams/bench`` and in the top-level ``bench/``."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        for candidate in (parent / "peers", parent / "bench" / "peers"):
            if (candidate / "package.json").is_file():
                return candidate
    raise FileNotFoundError("bench/peers/package.json not found above " + str(here))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(work_dir: Path) -> Iterator[int]:
    """A Redis on loopback with no persistence (no RDB, no AOF), stopped on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server (Debian: apt-get install redis-server)")
    port = _free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    log = (work_dir / "redis.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work_dir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (see {work_dir / 'redis.log'})")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _bullmq(port: int, tasks: int, latency_seconds: float) -> list[BenchResult]:
    directory = peers_dir()
    node = shutil.which("node")
    if node is None:
        detail = "node not found (Node.js 18+ runs the BullMQ peer)"
        return [BenchResult(n, "not installed", detail=detail) for n in PEER_ROWS[:2]]
    if not (directory / "node_modules" / "bullmq").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            detail = f"BullMQ is not installed: npm ci in {directory}"
            return [BenchResult(n, "not installed", detail=detail) for n in PEER_ROWS[:2]]
        print(f"installing BullMQ: npm ci in {directory} ...", file=sys.stderr, flush=True)
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=directory,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    out = subprocess.run(
        [
            node,
            "bullmq_bench.mjs",
            "--port",
            str(port),
            "--jobs",
            str(tasks),
            "--concurrency",
            "8",
            "--latency-seconds",
            str(latency_seconds),
        ],
        cwd=directory,
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    detail = f"BullMQ {doc['version']} + Redis, 1 worker, concurrency {doc['concurrency']}"
    lat = doc["latency"]
    plain = BenchResult(
        "bullmq",
        "ok",
        events=doc["plain"]["jobs"],
        seconds=doc["plain"]["seconds"],
        detail=detail,
        extra={
            "latency_rate": lat["rate"],
            "latency_p50_ms": _round(lat["p50_ms"]),
            "latency_p99_ms": _round(lat["p99_ms"]),
            "latency_samples": lat["completed"],
            "version": doc["version"],
        },
    )
    priority = BenchResult(
        "bullmq-priority",
        "ok",
        events=doc["priorities"]["jobs"],
        seconds=doc["priorities"]["seconds"],
        detail=detail + ", priorities 1-4",
        extra={"version": doc["version"]},
    )
    return [plain, priority]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _celery(port: int, tasks: int, latency_seconds: float, work_dir: Path) -> BenchResult:
    try:
        import celery  # type: ignore[import-untyped]
    except ImportError:
        return BenchResult(
            "celery", "not installed", detail="pip install -e '.[bench]' (celery[redis])"
        )
    directory = peers_dir()
    url = f"redis://127.0.0.1:{port}"
    env = {**os.environ, "TASKSTREAM_PEER_REDIS_URL": url}
    children = os.cpu_count() or 1
    log = (work_dir / "celery-worker.log").open("w")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_peer",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(children),
            "--loglevel",
            "WARNING",
        ],
        cwd=directory,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    os.environ["TASKSTREAM_PEER_REDIS_URL"] = url
    sys.path.insert(0, str(directory))
    try:
        sys.modules.pop("celery_peer", None)
        import celery_peer  # type: ignore[import-not-found]

        deadline = time.monotonic() + 60
        while not celery_peer.app.control.ping(timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start (see {log.name})")
        celery_peer.throughput(min(tasks, 200))  # warm the pool's children and connections
        best = celery_peer.throughput(tasks)
        lat = celery_peer.latency(max(1.0, best["tasks_per_s"] / 2), latency_seconds)
        celery_peer.app.close()
        return BenchResult(
            "celery",
            "ok",
            events=best["tasks"],
            seconds=best["seconds"],
            detail=f"Celery {celery.__version__} + Redis, prefork {children}",
            extra={
                "latency_rate": lat["rate"],
                "latency_p50_ms": _round(lat["p50_ms"]),
                "latency_p99_ms": _round(lat["p99_ms"]),
                "latency_samples": lat["completed"],
                "version": celery.__version__,
            },
        )
    finally:
        sys.path.remove(str(directory))
        try:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()


def run_peers(tasks: int, latency_seconds: float, work_dir: Path) -> list[BenchResult]:
    """The peers' rows: BullMQ (plain, with priorities) and Celery, each on a fresh Redis."""
    results: list[BenchResult] = []
    for name in ("bullmq", "celery"):
        before = load_average()
        print(f"peers: {name} with {tasks} no-op tasks ...", file=sys.stderr, flush=True)
        rows: list[BenchResult]
        try:
            with redis_server(work_dir / f"redis-{name}") as port:
                if name == "bullmq":
                    rows = _bullmq(port, tasks, latency_seconds)
                else:
                    rows = [_celery(port, tasks, latency_seconds, work_dir)]
        except FileNotFoundError as exc:
            names = PEER_ROWS[:2] if name == "bullmq" else ("celery",)
            rows = [BenchResult(n, "not installed", detail=str(exc)) for n in names]
        except Exception as exc:
            names = PEER_ROWS[:2] if name == "bullmq" else ("celery",)
            rows = [BenchResult(n, "failed", detail=f"{type(exc).__name__}: {exc}") for n in names]
        for row in rows:
            row.extra["load_before"] = before
            row.extra["load_after"] = load_average()
        results.extend(rows)
    return results


def _rate(results: Sequence[BenchResult], name: str) -> float | None:
    row = next((r for r in results if r.name == name), None)
    return row.events_per_s if row is not None else None


def ratios(
    ours: Sequence[tuple[str, Sequence[BenchResult]]], peers: Sequence[BenchResult]
) -> dict[str, float | None]:
    """``{broker}:{row}/{peer}`` → our rate divided by the peer's, for every pair measured."""
    out: dict[str, float | None] = {}
    for broker, results in ours:
        for row, _ in _OURS:
            mine = _rate(results, row)
            for peer in ("bullmq", "celery"):
                theirs = _rate(peers, peer)
                if mine is not None and theirs:
                    out[f"{broker}:{row}/{peer}"] = mine / theirs
    return out


def format_peers(
    peers: Sequence[BenchResult], ours: Sequence[tuple[str, Sequence[BenchResult]]]
) -> str:
    """The peers' rows, then our rows as a multiple of each peer's (same run, same machine)."""
    lines = [f"{'peer':<17}{'tasks':>8}{'seconds':>10}{'tasks/s':>10}{'load':>10}  notes"]
    for r in peers:
        before, after = r.extra.get("load_before"), r.extra.get("load_after")
        load = f"{before[0]:.1f}-{after[0]:.1f}" if before and after else "-"
        if r.status != "ok":
            lines.append(
                f"{r.name:<17}{'-':>8}{'-':>10}{'-':>10}{load:>10}  {r.status}: {r.detail}"
            )
            continue
        lines.append(
            f"{r.name:<17}{r.events:>8}{r.seconds:>10.2f}{r.events_per_s or 0:>10,.0f}"
            f"{load:>10}  {r.detail}"
        )
        if "latency_rate" in r.extra:
            x = r.extra
            lines.append(
                f"{'':<17}submit->completed at {x['latency_rate']:,.0f} tasks/s: p50 "
                f"{x['latency_p50_ms']} ms, p99 {x['latency_p99_ms']} ms "
                f"({x['latency_samples']} tasks)"
            )
    for key, value in ratios(ours, peers).items():
        if value is not None:
            broker, pair = key.split(":", 1)
            row, peer = pair.split("/")
            title = dict(_OURS)[row]
            lines.append(f"{broker}: {title} / {peer}: {value:.2f}x")
    return "\n".join(lines)


def as_dict(
    peers: Sequence[BenchResult], ours: Sequence[tuple[str, Sequence[BenchResult]]]
) -> dict[str, Any]:
    return {"results": [r.as_dict() for r in peers], "ratios": ratios(ours, peers)}
