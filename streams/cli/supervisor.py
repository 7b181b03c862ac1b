"""``taskstream run``: the parts of taskstream as separate OS processes on one machine.

Separate processes let the processor, the delay agents, the notifier, the projector + view and
the demo executors use more than one core, and each part can also be run alone for a real deployment.
The supervisor owns the broker when no cluster is configured: the embedded one (memory only, a
fresh data directory per run), or with ``--apache-kafka`` a local Apache Kafka whose log and
the parts' state live under the data directory and survive a restart. It starts the parts with
the broker's address, and stops everything on SIGTERM/SIGINT within a bound (exit 0). A part
that dies on its own is started again after a backoff (``restart_backoff``: 1 s, doubling to
30 s while it keeps dying within a minute of its start); the others keep running, since every
part recovers its work from Kafka on its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from streams.cli.broker_address import remember_broker
from streams.kafka.apache import ApacheKafka
from streams.kafka.embedded import EmbeddedBroker
from streams.kafka.process import die_with_parent
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Part:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    """Restarts in a row, each within ``STABLE_S`` of its start (the backoff's exponent)."""
    restart_at: float | None = None


FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_S = 60.0
"""A part that ran this long before dying counts as healthy: its backoff starts over."""


def restart_backoff(restarts: int) -> float:
    """The wait before restart number ``restarts`` (1 -> 1 s, 2 -> 2 s, ... capped at 30 s)."""
    return float(min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** max(0, restarts - 1)))


def _schedule_restart(part: Part, now: float) -> None:
    code = part.proc.returncode if part.proc is not None else None
    part.restarts = 1 if now - part.started_at >= STABLE_S else part.restarts + 1
    wait = restart_backoff(part.restarts)
    part.restart_at = now + wait
    part.proc = None
    log.error("%s exited with code %s; restarting it in %.0f s", part.name, code, wait)


def _spawn(part: Part, env: dict[str, str]) -> None:
    part.proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", *part.argv],
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    part.started_at = time.monotonic()
    part.restart_at = None
    log.info("started %s (pid %d)", part.name, part.proc.pid)


def _stop_all(parts: list[Part], timeout_s: float) -> None:
    for part in parts:
        if part.proc and part.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                part.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for part in parts:
        if part.proc is None:
            continue
        try:
            part.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", part.name)
            with contextlib.suppress(ProcessLookupError):
                part.proc.kill()
            part.proc.wait()


def supervise(
    settings: Settings,
    parts: list[Part],
    stop_timeout_s: float = 7.0,
    *,
    apache_kafka: bool = False,
) -> int:
    """Run ``parts`` until a signal (exit 0), restarting any that dies with a backoff.

    Without a configured cluster the supervisor starts a broker: the embedded one, or
    Apache Kafka under ``data_dir/kafka`` when ``apache_kafka``."""
    stopping = {"signal": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stopping["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    broker: EmbeddedBroker | ApacheKafka | None = None
    ephemeral: Path | None = None
    address_file: Path | None = None
    code = 0
    try:
        env = dict(os.environ)
        if settings.kafka_bootstrap_servers:
            env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
        elif apache_kafka:
            # Kafka keeps its log across a restart, so the parts' local state (under the
            # same data directory) stays valid: nothing here is temporary.
            kafka = ApacheKafka(_ensure_dir(settings.data_dir) / "kafka")
            broker = kafka
            kafka.start()
            env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap_servers
            env["TASKSTREAM_KAFKA_BROKER"] = "kafka"
            address_file = remember_broker(settings, kafka.bootstrap_servers)
            print(f"Apache Kafka at {kafka.bootstrap_servers} (data: {kafka.data_dir})", flush=True)
        else:
            # The embedded broker keeps nothing across a restart, so local state from an
            # earlier run would describe a log that no longer exists: each run gets its own
            # data directory, removed when the run ends.
            run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=_ensure_dir(settings.data_dir)))
            ephemeral = run_dir
            env["TASKSTREAM_DATA_DIR"] = str(run_dir)
            broker = EmbeddedBroker(log_path=run_dir / "broker.log")
            broker.start()
            env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
            env["TASKSTREAM_KAFKA_BROKER"] = "embedded"
            address_file = remember_broker(settings, broker.bootstrap_servers)
            print(f"embedded broker at {broker.bootstrap_servers} (data: {run_dir})", flush=True)
        import asyncio

        from streams.kafka.topics import ensure_topics

        bootstrapped = settings.model_copy(
            update={"kafka_bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"]}
        )
        asyncio.run(ensure_topics(bootstrapped))
        for part in parts:
            if stopping["signal"]:
                break
            _spawn(part, env)
        print(
            f"taskstream running: view at http://{settings.http_host}:{settings.http_port}/ "
            "(Ctrl-C stops)",
            flush=True,
        )
        while not stopping["signal"]:
            now = time.monotonic()
            for part in parts:
                if part.proc is not None and part.proc.poll() is not None:
                    _schedule_restart(part, now)
                elif part.proc is None and part.restart_at is not None and now >= part.restart_at:
                    _spawn(part, env)
            time.sleep(0.1)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stop_all(parts, stop_timeout_s)
        if broker is not None:
            broker.stop()
        if ephemeral is not None:
            shutil.rmtree(ephemeral, ignore_errors=True)
        if address_file is not None:
            address_file.unlink(missing_ok=True)
    return code


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
