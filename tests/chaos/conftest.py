"""The chaos suite: the whole stack as OS processes. The kill test runs on a broker of its own
(it is frozen with SIGSTOP, which must not hit the broker other tests share): Apache Kafka, or
the embedded broker when the suite runs on it (TASKSTREAM_TEST_BROKER=embedded); the
two-processor test, which freezes nothing, on the suite's broker."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.processes import ProcessStack
from tests.conftest import TEST_BROKER


def chaos_broker() -> str:
    """The kind of broker a chaos stack starts: the suite's own kind (never an external one,
    which a test must not freeze)."""
    return "embedded" if TEST_BROKER == "embedded" else "kafka"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def chaos_workdir(tmp_path: Path) -> Path:
    return tmp_path / "chaos"


@pytest.fixture
def process_stacks(request: pytest.FixtureRequest) -> Iterator[list[ProcessStack]]:
    """Stacks a test registers here are closed afterwards; on failure every process's log
    (kept under the test's tmp dir) is printed."""
    stacks: list[ProcessStack] = []
    yield stacks
    failed = any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    for stack in stacks:
        stack.close()
        if failed:
            for path in sorted(stack.logs.glob("*.log")):
                text = path.read_text(errors="replace")
                print(f"\n===== {path} (last 8000 of {len(text)} chars) =====\n{text[-8000:]}")
