"""CLI mistakes print one clear line and exit non-zero, without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import assert_one_clear_line, run_cli


def test_help_lists_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in (
        "run",
        "broker",
        "submit",
        "cancel",
        "approve",
        "reject",
        "status",
        "tail",
        "dlq",
        "worker",
    ):
        assert command in result.stdout


def test_bad_json_payload(tmp_path: Path) -> None:
    result = run_cli("submit", "tag_add", "--client", "c1", "--payload", "{not json", cwd=tmp_path)
    assert_one_clear_line(result, "--payload", "not valid JSON")


def test_payload_must_be_an_object(tmp_path: Path) -> None:
    result = run_cli("submit", "tag_add", "--client", "c1", "--payload", "[1, 2]", cwd=tmp_path)
    assert_one_clear_line(result, "JSON object")


def test_unknown_operation(tmp_path: Path) -> None:
    result = run_cli("submit", "teleport", "--client", "c1", cwd=tmp_path)
    assert_one_clear_line(result, "unknown operation 'teleport'")


def test_unreachable_broker(tmp_path: Path) -> None:
    result = run_cli(
        "submit",
        "tag_add",
        "--client",
        "c1",
        cwd=tmp_path,
        env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"},
    )
    assert_one_clear_line(result, "no Kafka broker answers at 127.0.0.1:9")


def test_no_broker_configured(tmp_path: Path) -> None:
    result = run_cli("submit", "tag_add", "--client", "c1", cwd=tmp_path)
    assert_one_clear_line(result, "KAFKA_BOOTSTRAP_SERVERS")


@pytest.mark.parametrize(
    "args", [("status",), ("status", "no-such-task"), ("cancel", "no-such-task")]
)
def test_view_not_running(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run_cli(*args, cwd=tmp_path, env={"TASKSTREAM_HTTP_PORT": "9"})
    assert_one_clear_line(result, "does not answer")
