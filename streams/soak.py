"""The whole stack as OS processes, for soak runs and the chaos suite.

``ProcessStack`` starts a broker it owns (Apache Kafka or the embedded one) and the parts of
taskstream as separate processes (``python -m streams.cli processor|delay|view|worker``), each
with its own log file, and can SIGKILL and restart any of them. It remembers every process it started (pid and start
time) so a caller can prove that none is left running.

``python -m streams.soak --minutes 10 --rate R`` runs the stack under a steady load of
``R`` tasks per second, samples the resident memory of every process, the projection lag and
the processor's lag every 10 s, and writes a table to ``docs/soak.md``. Without ``--rate`` it
first measures the maximum rate (a burst of tasks, completed tasks per second from the first
submit to the last outcome) on a fresh stack and soaks at half of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.executor.context import TaskContext
from streams.kafka import consumer_kwargs
from streams.kafka.local import LocalBroker, local_broker
from streams.kafka.process import die_with_parent, free_loopback_port
from streams.kafka.profile import broker_profile
from streams.runtime.reader import KafkaLogReader
from streams.settings import Settings

__all__ = ["HANDLERS", "PartProcess", "ProcessStack", "main", "process_alive", "rss_kib"]

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]

# Short group timings and a fast tick: fail-over after a SIGKILL within a few seconds.
FAST_ENV: dict[str, str] = {
    "TASKSTREAM_KAFKA_SESSION_TIMEOUT_MS": "3000",
    "TASKSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    "TASKSTREAM_TICK_INTERVAL_MS": "50",
    "TASKSTREAM_BATCH_WINDOW_MS": "300",
    "TASKSTREAM_CIRCUIT_COOLDOWN_MS": "500",
    "TASKSTREAM_PARTITIONS": "4",
    "TASKSTREAM_LOG_LEVEL": "INFO",
    # The load is far over a CRM's 100 requests per 10 s per client on purpose: no buckets.
    "TASKSTREAM_CLIENT_RATE_LIMIT": "none",
}


# --- processes -------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/pid/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie runs nothing
    return fields[19]


def process_alive(pid: int, started: str | None) -> bool:
    """True while the process ``pid`` that started at ``started`` still runs (not a reused pid)."""
    return started is not None and _start_time(pid) == started


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (VmRSS), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass
class PartProcess:
    """One part: how to start it, its current process, its log (appended across restarts)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class ProcessStack:
    """A broker of its own (``broker_kind``: ``kafka`` for Apache Kafka, ``embedded``) plus
    parts as processes; see the module docstring.

    Use as a context manager: every process it started is stopped on the way out (SIGTERM,
    then SIGKILL after ``stop_timeout_s``), also when the body raised.
    """

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    stop_timeout_s: float = 10.0
    broker_kind: str = "kafka"
    broker: LocalBroker | None = None
    parts: dict[str, PartProcess] = field(default_factory=dict)
    started: list[tuple[str, int, str | None]] = field(default_factory=list)
    """Every process started: (name, pid, start time)."""

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs = self.workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.prefix = self.env.get("TASKSTREAM_TOPIC_PREFIX") or f"s{uuid.uuid4().hex[:8]}"
        self.http_port = int(self.env.get("TASKSTREAM_HTTP_PORT") or free_loopback_port())
        base = {**FAST_ENV, **self.env}
        base.setdefault("TASKSTREAM_TOPIC_PREFIX", self.prefix)
        base.setdefault("TASKSTREAM_GROUP_ID", f"{self.prefix}-processor")
        base.setdefault("TASKSTREAM_DATA_DIR", str(self.workdir / "data"))
        base["TASKSTREAM_HTTP_HOST"] = "127.0.0.1"
        base["TASKSTREAM_HTTP_PORT"] = str(self.http_port)
        self.env = base

    # lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> ProcessStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_broker(self) -> str:
        broker = local_broker(self.broker_kind, self.workdir / "broker")
        broker.start()
        self.broker = broker
        self.started.append(("broker", int(broker.pid or 0), _start_time(int(broker.pid or 0))))
        self.env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        return broker.bootstrap_servers

    @property
    def bootstrap(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    def settings(self, **overrides: Any) -> Settings:
        """Settings as the parts see them (from the same environment)."""
        values: dict[str, Any] = {
            key[len("TASKSTREAM_") :].lower(): value
            for key, value in self.env.items()
            if key.startswith("TASKSTREAM_")
        }
        values["kafka_bootstrap_servers"] = self.bootstrap
        values.update(overrides)
        return Settings(**values)

    def add(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.parts[name] = PartProcess(name, list(argv), dict(env or {}), self.logs / f"{name}.log")

    def start(self, name: str) -> PartProcess:
        part = self.parts[name]
        if part.alive():
            raise RuntimeError(f"{name} is already running (pid {part.pid})")
        # Each part a static group member of its own, stable across its restarts.
        env = {**os.environ, "TASKSTREAM_INSTANCE_ID": name, **self.env, **part.env}
        with open(part.log_path, "ab") as logfile:
            logfile.write(f"\n==== start {name} at {time.strftime('%H:%M:%S')} ====\n".encode())
            logfile.flush()
            part.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", *part.argv],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        self.started.append((name, part.pid, _start_time(part.pid)))
        log.info("started %s (pid %d)", name, part.pid)
        return part

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout_s: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit; returns the exit code."""
        part = self.parts[name]
        assert part.proc is not None
        if part.proc.poll() is None:
            part.proc.send_signal(sig)
        try:
            return int(part.proc.wait(timeout=timeout_s))
        except subprocess.TimeoutExpired:
            part.proc.kill()
            return int(part.proc.wait())

    def restart(self, name: str) -> PartProcess:
        part = self.parts[name]
        part.restarts += 1
        return self.start(name)

    def dead_parts(self) -> list[tuple[str, int | None]]:
        """Parts that were started and have exited since, with their exit codes."""
        return [
            (p.name, p.proc.returncode)
            for p in self.parts.values()
            if p.proc is not None and p.proc.poll() is not None
        ]

    def pids(self) -> dict[str, int]:
        out = {name: p.pid for name, p in self.parts.items() if p.alive()}
        if self.broker is not None and self.broker.pid is not None:
            out["broker"] = self.broker.pid
        return out

    def stop_parts(self) -> dict[str, int | None]:
        """SIGTERM every running part, SIGKILL what is still there after the bound."""
        for part in self.parts.values():
            if part.alive():
                assert part.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    part.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        codes: dict[str, int | None] = {}
        for part in self.parts.values():
            if part.proc is None:
                continue
            try:
                codes[part.name] = part.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", part.name)
                part.proc.kill()
                codes[part.name] = part.proc.wait()
        return codes

    def close(self) -> None:
        try:
            self.stop_parts()
        finally:
            if self.broker is not None:
                self.broker.resume()  # a paused broker does not stop on SIGTERM
                self.broker.stop()

    def left_running(self) -> list[tuple[str, int]]:
        """Processes this stack started that still run."""
        return [(name, pid) for name, pid, st in self.started if process_alive(pid, st)]

    def log_tail(self, name: str, chars: int = 6000) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace")
        return text[-chars:]

    # HTTP view ------------------------------------------------------------------------------

    def view_get(self, path: str, timeout_s: float = 5.0) -> tuple[dict[str, Any], dict[str, str]]:
        """GET the view (blocking; call it in a thread from async code)."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
            body = json.loads(response.read())
            return body, dict(response.headers.items())


# --- soak handlers (``--handlers streams.soak``) --------------------------------------------

SOAK_FAILING_PERCENT = 1
"""Share of soak tasks (by a hash of the task id) that fail on every attempt: they take the
retry path through the delay tiers and end as dead letters."""


def soak_fails(task_id: str, percent: int = SOAK_FAILING_PERCENT) -> bool:
    return zlib.crc32(task_id.encode()) % 100 < percent


async def _soak_handler(ctx: TaskContext) -> dict[str, Any]:
    if soak_fails(ctx.task_id):
        raise RuntimeError(f"soak task {ctx.task_id} fails on every attempt")
    await asyncio.sleep(0.002)
    return {"ok": True}


HANDLERS = {
    "conversation_send": _soak_handler,
    "tag_add": _soak_handler,
    "integration_sync": _soak_handler,
}

# One client per partition of the default 4: the Kafka default partitioner (murmur2 of the key)
# sends these to partitions 0, 1, 2 and 3 (soak_client_1..4 would use only two of them).
SOAK_CLIENTS = ("soak_client_10", "soak_client_2", "soak_client_7", "soak_client_1")
# (operation, share): a session task, a batchable one, a pool one.
SOAK_MIX = (("conversation_send", 7), ("tag_add", 2), ("integration_sync", 1))


def soak_stack(
    workdir: Path,
    extra_env: Mapping[str, str] | None = None,
    *,
    broker_kind: str = "kafka",
    handlers: str = "streams.soak",
) -> ProcessStack:
    """The soak's stack: processor, delay agent, view and one executor serving the four
    clients' sessions (64 each) and the pool, with ``handlers`` (a module of ``HANDLERS``)."""
    env = {
        "TASKSTREAM_DEFAULT_TIMEOUT_MS": "30000",
        "TASKSTREAM_SESSION_STALE_MS": "60000",
        # Quiet by default; TASKSTREAM_LOG_LEVEL=INFO (or DEBUG) in the soak's environment
        # reaches the parts' logs.
        "TASKSTREAM_LOG_LEVEL": os.environ.get("TASKSTREAM_LOG_LEVEL", "WARNING"),
        **(extra_env or {}),
    }
    stack = ProcessStack(workdir, env=env, broker_kind=broker_kind)
    stack.add("processor", ["processor"])
    stack.add("delay", ["delay"])
    stack.add("view", ["view"])
    worker = ["worker", "--handlers", handlers, "--pool", "--concurrency", "256"]
    for i, client in enumerate(SOAK_CLIENTS):
        worker += ["--session", f"soak_session_{i + 1}:{client}:64"]
    stack.add("worker", worker)
    return stack


# --- load, sampling --------------------------------------------------------------------------


class Load:
    """Submits tasks at a paced rate with the client SDK until stopped."""

    def __init__(self, settings: Settings, rate_per_s: float, tag: str) -> None:
        self.settings = settings
        self.rate = rate_per_s
        self.tag = tag
        self.submitted = 0
        self.errors = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def _task(self, n: int) -> tuple[str, str, str]:
        client = SOAK_CLIENTS[n % len(SOAK_CLIENTS)]
        slot = n % sum(share for _, share in SOAK_MIX)
        operation = SOAK_MIX[-1][0]
        for name, share in SOAK_MIX:
            if slot < share:
                operation = name
                break
            slot -= share
        return client, operation, f"{self.tag}-{n:08d}"

    async def run(self, limit: int | None = None) -> int:
        from streams.client import TaskstreamClient
        from streams.errors import BrokerError

        slot_s = 0.05
        async with TaskstreamClient(self.settings) as client:

            async def one(n: int) -> None:
                client_id, operation, task_id = self._task(n)
                try:
                    await client.submit(client_id, operation, {"n": n}, task_id=task_id)
                except BrokerError:
                    self.errors += 1

            started = time.monotonic()
            owed = 0.0
            while not self._stop.is_set() and (limit is None or self.submitted < limit):
                if self.rate > 0:
                    owed = self.rate * (time.monotonic() - started) - self.submitted
                    count = int(owed)
                else:
                    count = 500  # as fast as the producer goes
                if limit is not None:
                    count = min(count, limit - self.submitted)
                if count > 0:
                    first = self.submitted
                    self.submitted += count
                    await asyncio.gather(*(one(first + i) for i in range(count)))
                else:
                    await asyncio.sleep(slot_s)
        return self.submitted


class LogOffsets:
    """End offsets and a consumer group's committed offsets, for lag and outcome counts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: Any = None
        self._group: Any = None

    async def __aenter__(self) -> LogOffsets:
        self._consumer = AIOKafkaConsumer(**consumer_kwargs(self.settings))
        await self._consumer.start()
        self._group = AIOKafkaConsumer(**consumer_kwargs(self.settings, self.settings.group_id))
        await self._group.start()
        self._reader = KafkaLogReader(self._consumer, stall_timeout_s=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for consumer in (self._consumer, self._group):
            if consumer is not None:
                await consumer.stop()

    async def end(self, name: str) -> int:
        topic = self.settings.topic(name)
        return sum(
            [await self._reader.end_offset(topic, p) for p in range(self.settings.partitions)]
        )

    async def processor_lag(self) -> int:
        """Commands not yet committed by the processor group (its commits are advisory and
        trail the stores by at most one cycle)."""
        topic = self.settings.topic("commands")
        lag = 0
        for p in range(self.settings.partitions):
            end = await self._reader.end_offset(topic, p)
            committed = await self._group.committed(TopicPartition(topic, p))
            lag += end - (committed or 0)
        return lag


@dataclass
class Sample:
    t_s: float
    rss_kib: dict[str, int | None]
    projection_lag: int | None
    processor_lag: int
    submitted: int
    completed: int
    failed: int
    projected_completed: int | None


async def _sample(stack: ProcessStack, offsets: LogOffsets, load: Load, t0: float) -> Sample:
    rss = {name: rss_kib(pid) for name, pid in stack.pids().items()}
    lag: int | None = None
    projected: int | None = None
    try:
        body, headers = await asyncio.to_thread(stack.view_get, "/status")
        lag = int(headers.get("x-projection-lag", body["projection"]["lag_events"]))
        projected = int(body["tasks_by_state"].get("completed", 0))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("view did not answer: %s", exc)
    return Sample(
        t_s=time.monotonic() - t0,
        rss_kib=rss,
        projection_lag=lag,
        processor_lag=await offsets.processor_lag(),
        submitted=load.submitted,
        completed=await offsets.end("completed"),
        failed=await offsets.end("failed"),
        projected_completed=projected,
    )


async def wait_view(stack: ProcessStack, timeout_s: float = 60.0, sessions: int = 0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        dead = stack.dead_parts()
        if dead:
            raise RuntimeError(f"parts exited while starting: {dead}")
        try:
            body, _ = await asyncio.to_thread(stack.view_get, "/status", 2.0)
            if int(body["active_sessions"]) >= sessions:
                return
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the view did not show {sessions} sessions within {timeout_s}s")
        await asyncio.sleep(0.5)


def _start_all(stack: ProcessStack, own_broker: bool = True) -> None:
    """Start the broker (unless the stack's environment names one), the topics, the parts."""
    if own_broker:
        stack.start_broker()
    asyncio.run(_ensure(stack.settings()))
    for name in ("processor", "delay", "view", "worker"):
        stack.start(name)


async def _ensure(settings: Settings) -> None:
    from streams.topics import ensure_topics

    await ensure_topics(settings)


@dataclass
class Burst:
    """A burst of tasks through the whole stack: completed tasks per second from the first
    submit to the last completion, and the CPU each process spent meanwhile."""

    broker: str
    tasks: int
    seconds: float
    cpu_s: dict[str, float]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds if self.seconds > 0 else 0.0

    def cpu_per_1000(self) -> dict[str, float]:
        """CPU seconds per 1,000 tasks of every part (the broker too when it is known)."""
        return {n: round(s * 1000 / max(1, self.tasks), 3) for n, s in self.cpu_s.items()}


async def burst(
    stack: ProcessStack,
    tasks: int,
    tag: str = "ramp",
    counts: Callable[[str], bool] | None = None,
    extra_pids: Mapping[str, int] | None = None,
    timeout_s: float = 300.0,
) -> Burst:
    """Submit ``tasks`` as fast as the producer goes and wait until every task ``counts``
    says will complete (default: all but the soak's always-failing share) is on
    ``task.completed``. The stack's parts must be running."""
    from streams.bench.common import cpu_seconds, load_average

    counted = counts or (lambda task_id: not soak_fails(task_id))
    settings = stack.settings()
    pids = {**stack.pids(), **(extra_pids or {})}
    load_before = load_average()
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own_before = time.process_time()
    load = Load(settings, 0, tag)
    async with LogOffsets(settings) as offsets:
        baseline = await offsets.end("completed")
        expected = baseline + sum(1 for n in range(tasks) if counted(load._task(n)[2]))
        started = time.monotonic()
        await load.run(limit=tasks)
        deadline = time.monotonic() + timeout_s
        while await offsets.end("completed") < expected:
            if time.monotonic() > deadline or stack.dead_parts():
                raise RuntimeError(f"burst did not complete: {stack.dead_parts()}")
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
    cpu = {
        name: round(after - before, 2)
        for name, pid in pids.items()
        if (before := cpu_before[name]) is not None and (after := cpu_seconds(pid)) is not None
    }
    cpu["harness"] = round(time.process_time() - own_before, 2)
    return Burst(stack.broker_kind, expected - baseline, elapsed, cpu, load_before, load_average())


async def measure_max_rate(workdir: Path, tasks: int, broker_kind: str = "kafka") -> Burst:
    """The soak's burst on a fresh stack with a broker of its own."""
    with soak_stack(workdir, broker_kind=broker_kind) as stack:
        await asyncio.to_thread(_start_all, stack)
        await wait_view(stack, sessions=len(SOAK_CLIENTS))
        return await burst(stack, tasks)


async def soak(
    workdir: Path,
    minutes: float,
    rate: float,
    interval_s: float = 10.0,
    broker_kind: str = "kafka",
) -> tuple[list[Sample], dict[str, Any]]:
    from streams.bench.common import load_average

    samples: list[Sample] = []
    loads: list[tuple[float, float, float]] = [load_average()]
    with soak_stack(workdir, broker_kind=broker_kind) as stack:
        await asyncio.to_thread(_start_all, stack)
        await wait_view(stack, sessions=len(SOAK_CLIENTS))
        settings = stack.settings()
        load = Load(settings, rate, "soak")
        t0 = time.monotonic()
        generating = asyncio.create_task(load.run())
        async with LogOffsets(settings) as offsets:
            samples.append(await _sample(stack, offsets, load, t0))
            end = t0 + minutes * 60
            while time.monotonic() < end:
                await asyncio.sleep(min(interval_s, max(0.0, end - time.monotonic())))
                if generating.done():
                    generating.result()
                dead = stack.dead_parts()
                if dead:
                    raise RuntimeError(f"parts died during the soak: {dead}")
                samples.append(await _sample(stack, offsets, load, t0))
                loads.append(load_average())
                print(_row(samples[-1], list(samples[0].rss_kib)), flush=True)
            load.stop()
            await generating
            # Drain: let the backlog settle, then one last sample.
            drain_deadline = time.monotonic() + 60
            while time.monotonic() < drain_deadline:
                s = await _sample(stack, offsets, load, t0)
                if s.processor_lag == 0 and (s.projection_lag or 0) == 0:
                    break
                await asyncio.sleep(1)
            samples.append(await _sample(stack, offsets, load, t0))
        summary = {
            "submitted": load.submitted,
            "submit_errors": load.errors,
            "load_min": min(x[0] for x in loads),
            "load_max": max(x[0] for x in loads),
            "profile": broker_profile(settings).name,
        }
    return samples, summary


# --- report ----------------------------------------------------------------------------------


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


def _row(s: Sample, names: list[str]) -> str:
    cells = [f"{s.t_s:.0f}", *(_mib(s.rss_kib.get(n)) for n in names)]
    cells += [
        "-" if s.projection_lag is None else str(s.projection_lag),
        str(s.processor_lag),
        str(s.submitted),
        str(s.completed),
        str(s.failed),
    ]
    return "| " + " | ".join(cells) + " |"


@dataclass
class SoakRun:
    """One broker's soak: the burst it was paced from (None with ``--rate``), the samples."""

    broker: str
    rate: float
    burst: Burst | None
    samples: list[Sample]
    summary: dict[str, Any]
    started_at: str
    others: list[str]


BROKER_TITLES = {"kafka": "Apache Kafka 4 (KRaft, one node)", "embedded": "embedded broker (Tansu)"}


def render(command: str, minutes: float, runs: Sequence[SoakRun]) -> str:
    lines = [
        "# Soak results",
        "",
        f"Produced by `{command}` ({os.cpu_count()} CPUs, Python {sys.version.split()[0]}); "
        f"brokers: {', '.join(r.broker for r in runs)}, one after the other, each with a "
        "fresh stack.",
        "",
        f"Each soak: **{minutes:g} minutes**; the mix is 70 % `conversation_send` (session), "
        "20 % `tag_add` (batched), 10 % `integration_sync` (pool); a 2 ms handler; "
        f"{SOAK_FAILING_PERCENT} % of tasks fail on every attempt (retries through the delay "
        "tiers, then dead letters). Samples every 10 s; RSS from /proc; projection lag from the "
        "view's `X-Projection-Lag`; processor lag = command-log end minus the processor group's "
        "committed offsets; completed/failed = records on `task.completed` / `task.failed`. The "
        "last row is taken after the load stopped, once the processor and projection lags "
        "settled (at most 60 s); tasks still queued then are not waited for. The maximum rate "
        "is a burst on a fresh stack (completed tasks per second from the first submit to the "
        "last completion of the tasks that do not always fail).",
        "",
    ]
    for run in runs:
        lines += _render_run(run)
    return "\n".join(lines)


def _render_run(run: SoakRun) -> list[str]:
    samples, summary = run.samples, run.summary
    names = list(samples[0].rss_kib)
    head = ["t (s)", *(f"{n} RSS (MiB)" for n in names)]
    head += ["projection lag (events)", "processor lag (commands)", "submitted", "completed"]
    head += ["failed"]
    lines = [
        f"## {BROKER_TITLES.get(run.broker, run.broker)}",
        "",
        f"The broker answered the profile probe as `{summary.get('profile')}`.",
        "",
    ]
    if run.burst is not None:
        b = run.burst
        cpu = ", ".join(f"{n} {v:.2f}" for n, v in b.cpu_per_1000().items())
        lines += [
            f"Maximum rate ({run.started_at}, load average {b.load_before[0]:.2f} before, "
            f"{b.load_after[0]:.2f} after): **{b.rate:.0f} tasks/s** ({b.tasks} tasks in "
            f"{b.seconds:.1f} s). CPU seconds per 1,000 tasks: {cpu}.",
            "",
        ]
    lines += [
        f"Soak at **{run.rate:.0f} tasks/s** (load average {summary.get('load_min')}–"
        f"{summary.get('load_max')} during the soak; other processes using CPU at the start: "
        f"{', '.join(run.others) or 'none'}).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += [_row(s, names) for s in samples]
    first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    lines += ["", "Summary:", ""]
    for n in names:
        values = [v for s in samples if (v := s.rss_kib.get(n)) is not None]
        lines.append(
            f"- {n}: RSS {_mib(first.rss_kib.get(n))} MiB after 10 s, "
            f"{_mib(last.rss_kib.get(n))} MiB at the end, max {_mib(max(values) if values else None)} MiB"
        )
    lags = [s.projection_lag for s in samples[:-1] if s.projection_lag is not None]
    plags = [s.processor_lag for s in samples[:-1]]
    lines += [
        f"- projection lag under load: max {max(lags) if lags else '-'} events; "
        f"processor lag: max {max(plags) if plags else '-'} commands",
        f"- submitted {summary.get('submitted')} tasks ({summary.get('submit_errors')} submit "
        f"errors); {last.completed} completed, {last.failed} failed permanently",
        "",
    ]
    return lines


def broker_kinds(chosen: Sequence[str] | None) -> list[str]:
    """``--broker`` values (repeatable; ``both`` means kafka then embedded) as broker kinds
    without repeats; none given means both."""
    from streams.kafka.local import BROKER_KINDS

    kinds: list[str] = []
    for value in chosen or ["both"]:
        for kind in BROKER_KINDS if value == "both" else (value,):
            if kind not in kinds:
                kinds.append(kind)
    return kinds


def main(argv: Sequence[str] | None = None) -> int:
    from streams.bench.common import busy_processes
    from streams.kafka.local import BROKER_KINDS

    parser = argparse.ArgumentParser(prog="python -m streams.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=None, help="tasks/s (default: half max)")
    parser.add_argument("--burst", type=int, default=6000, help="tasks for the max-rate burst")
    parser.add_argument(
        "--broker",
        action="append",
        choices=[*BROKER_KINDS, "both"],
        help="broker to soak on, started by the soak (repeatable; default: both, kafka first)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "soak.md")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    command = "python -m streams.soak " + shlex.join(argv if argv is not None else sys.argv[1:])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="taskstream-soak-"))
    runs: list[SoakRun] = []
    for kind in broker_kinds(args.broker):
        started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        others = busy_processes()
        max_burst: Burst | None = None
        rate = args.rate
        if rate is None:
            max_burst = asyncio.run(measure_max_rate(workdir / kind / "ramp", args.burst, kind))
            rate = max_burst.rate / 2
            print(
                f"{kind}: max rate {max_burst.rate:.0f} tasks/s; soaking at {rate:.0f} tasks/s",
                flush=True,
            )
        samples, summary = asyncio.run(
            soak(workdir / kind / "soak", args.minutes, rate, broker_kind=kind)
        )
        runs.append(SoakRun(kind, rate, max_burst, samples, summary, started_at, others))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render(command, args.minutes, runs))  # after each broker
    print(f"wrote {args.out} (process logs in {workdir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
