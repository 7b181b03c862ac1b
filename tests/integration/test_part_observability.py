"""The parts as a user runs them: the processor, a delay agent and a worker each answer
``/health`` and ``/metrics`` (Prometheus text that prometheus_client parses) on the port they
are given; and ``taskstream run`` starts a part again after it was killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.kafka.process import free_loopback_port
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def part_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TASKSTREAM_"))}
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers or ""
    env["TASKSTREAM_TOPIC_PREFIX"] = settings.topic_prefix
    env["TASKSTREAM_GROUP_ID"] = settings.group_id
    env["TASKSTREAM_DATA_DIR"] = str(settings.data_dir)
    env["TASKSTREAM_PARTITIONS"] = str(settings.partitions)
    return env


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:  # noqa: S310 - loopback
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def until_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            status, body = get(f"http://127.0.0.1:{port}/health")
        except OSError:
            time.sleep(0.3)
            continue
        if status == 200:
            return json.loads(body)  # type: ignore[no-any-return]
        time.sleep(0.3)
    raise AssertionError(f"no healthy /health on {port}:\n{log.read_text()}")


def metric_names(port: int) -> set[str]:
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {family.name for family in text_string_to_metric_families(text)}


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_processor_delay_and_worker_serve_health_and_metrics(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    asyncio.run(ensure_topics(settings))
    env = part_env(settings)
    log = tmp_path / "parts.log"
    parts = {
        "processor": ["processor"],
        "delay": ["delay"],
        "worker": ["worker", "--simulated", "--session", "s-obs:client_obs:1"],
    }
    ports = {name: free_loopback_port() for name in parts}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *argv, "--metrics-port", str(ports[name])],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(log, "ab"),  # noqa: SIM115 - handed to the child
        )
        for name, argv in parts.items()
    ]
    try:
        health = {
            name: until_healthy(ports[name], proc, log)
            for name, proc in zip(parts, procs, strict=True)
        }
        assert health["processor"]["part"] == "processor"
        assert health["worker"]["sessions"] == ["s-obs"] and health["worker"]["incarnation"]
        processor = metric_names(ports["processor"])
        assert {"taskstream_processor_ready", "taskstream_processor_partitions"} <= processor
        assert "taskstream_processor_commands_total" in processor
        assert "taskstream_delay_forwarded" in metric_names(ports["delay"])
        worker = metric_names(ports["worker"])
        assert {
            "taskstream_executor_total",
            "taskstream_executor_running",
            "taskstream_executor_session_running",
            "taskstream_executor_info",
        } <= worker
    finally:
        stop(procs)


def parts_named(supervisor: int, name: str) -> set[int]:
    """Live child processes of ``supervisor`` running ``streams.cli <name>``."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == supervisor and fields[0] != "Z" and b"streams.cli" in argv:
            if name.encode() in argv:
                found.add(int(entry.name))
    return found


def test_run_starts_a_killed_part_again(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    asyncio.run(ensure_topics(settings))
    env = part_env(settings)
    env["TASKSTREAM_HTTP_PORT"] = str(free_loopback_port())
    log = tmp_path / "run.log"
    run = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "run"],
        cwd=tmp_path,
        env=env,
        stdout=open(log, "ab"),  # noqa: SIM115 - handed to the child
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not parts_named(run.pid, "delay") and time.monotonic() < deadline:
            assert run.poll() is None, log.read_text()
            time.sleep(0.2)
        (first,) = parts_named(run.pid, "delay")
        others = parts_named(run.pid, "processor")
        os.kill(first, signal.SIGKILL)
        again: set[int] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert run.poll() is None, log.read_text()  # the supervisor keeps running
            again = parts_named(run.pid, "delay") - {first}
            if again:
                break
            time.sleep(0.2)
        assert again, f"the delay agent was not started again:\n{log.read_text()}"
        assert parts_named(run.pid, "processor") == others  # the others were left alone
        assert "delay exited with code -9; restarting it" in log.read_text()
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == 0, log.read_text()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
