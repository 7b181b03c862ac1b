"""Running a processor from a command line: signals, bounded stop, exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from streams.errors import ConfigurationError
from streams.runtime.signals import (
    EVENT_LOOP_ENV,
    PART_GC_THRESHOLDS,
    loop_factory,
    run_until_signalled,
)


async def test_an_error_in_the_work_gives_exit_code_1_and_a_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def work(stop: asyncio.Event) -> None:
        raise RuntimeError("boom")

    assert await run_until_signalled(work, name="t") == 1
    assert "stopped by an unhandled error" in caplog.text and "boom" in caplog.text


async def test_sigterm_sets_stop_and_a_clean_stop_gives_exit_code_0() -> None:
    stopped = []

    async def work(stop: asyncio.Event) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 5)
        stopped.append(True)

    assert await run_until_signalled(work, name="t") == 0
    assert stopped == [True]


async def test_a_stop_that_hangs_is_abandoned_after_the_grace_period() -> None:
    async def work(stop: asyncio.Event) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(60)

    assert await run_until_signalled(work, name="t", grace_s=0.2) == 0


def test_a_part_runs_with_its_collector_tuned_and_what_it_loaded_frozen() -> None:
    """In a process of its own, as a part runs: the thresholds stay changed after the call."""
    code = (
        "import asyncio, gc\n"
        "from streams.runtime.signals import run_part\n"
        "async def work(stop):\n"
        "    print(gc.get_threshold(), gc.get_freeze_count() > 0)\n"
        "raise SystemExit(run_part(work, name='t'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{PART_GC_THRESHOLDS} True"
    assert PART_GC_THRESHOLDS[0] > 700  # CPython's default young threshold


def test_a_part_runs_on_uvloop_unless_told_to_use_asyncio() -> None:
    code = (
        "import asyncio\n"
        "from streams.runtime.signals import run_part\n"
        "async def work(stop):\n"
        "    print(type(asyncio.get_running_loop()).__module__.split('.')[0])\n"
        "raise SystemExit(run_part(work, name='t'))\n"
    )

    def run(loop: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != EVENT_LOOP_ENV}
        if loop is not None:
            env[EVENT_LOOP_ENV] = loop
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )

    default, chosen, standard = run(None), run("uvloop"), run("asyncio")
    assert default.stdout.strip() == chosen.stdout.strip() == "uvloop", default.stderr
    assert standard.returncode == 0 and standard.stdout.strip() == "asyncio"
    wrong = run("trio")
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert "TASKSTREAM_EVENT_LOOP='trio': expected one of uvloop, asyncio" in wrong.stderr


def test_the_loop_factory_reads_the_environment_it_is_given() -> None:
    assert loop_factory({EVENT_LOOP_ENV: "asyncio"}) is None
    assert loop_factory({}) is loop_factory({EVENT_LOOP_ENV: " UVloop "}) is not None
    with pytest.raises(ConfigurationError, match="expected one of"):
        loop_factory({EVENT_LOOP_ENV: "tokio"})
