"""The whole stack as OS processes, for the soak, the bench and the chaos suite.

``ProcessStack`` starts a broker it owns (Apache Kafka or the embedded one) and the parts of
taskstream as separate processes (``python -m streams.cli processor|delay|view|worker``, run
from the source checkout so that ``--handlers bench.…`` and ``tests.…`` modules import), each
with its own log file, and can SIGKILL and restart any of them. It remembers every process it
started (pid and start time) so a caller can prove that none is left running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.kafka.local import LocalBroker, local_broker
from streams.kafka.process import die_with_parent, free_loopback_port
from streams.settings import Settings

__all__ = ["FAST_ENV", "PartProcess", "ProcessStack", "ROOT", "process_alive", "rss_kib"]

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
"""The source checkout: the parts run from here."""

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
