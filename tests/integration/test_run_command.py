"""`taskstream run --demo`, as a new user runs it: the demo shows completed work and a healthy
session within 30 s, and SIGTERM stops everything within 10 s, exit code 0, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streams.kafka.process import free_loopback_port


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents[int(entry.name)] = ppid
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return "Z" not in (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
    except OSError:
        return False


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=3) as answer:  # noqa: S310 - loopback only
        return json.loads(answer.read())  # type: ignore[no-any-return]


@pytest.mark.smoke
def test_run_demo_then_sigterm(tmp_path: Path) -> None:
    port = free_loopback_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TASKSTREAM_"))}
    env["TASKSTREAM_HTTP_PORT"] = str(port)
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "run", "--demo", "--rate", "10"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    descendants: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        healthy = False
        while time.monotonic() < deadline and not healthy:
            time.sleep(0.5)
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            descendants |= _children(proc.pid)
            try:
                health = _get(f"{base}/health")
                status = _get(f"{base}/status")
            except OSError:
                continue
            stats = health["stats"]
            assert isinstance(stats, dict)
            sessions = status["session_health"]
            assert isinstance(sessions, dict)
            healthy = stats["succeeded"] > 0 and sessions["healthy"] > 0
        assert healthy, (
            "no completed task and healthy session within 30 s:\n"
            + (tmp_path / "run.log").read_text()
        )
        descendants |= _children(proc.pid)
        assert len(descendants) >= 5  # broker, processor, delay, view, demo

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        took = time.monotonic() - started
        assert code == 0, (tmp_path / "run.log").read_text()
        assert took < 10, f"stopping took {took:.1f}s"
        time.sleep(0.5)
        left = sorted(p for p in descendants if _alive(p))
        assert not left, f"processes left behind: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in descendants:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
