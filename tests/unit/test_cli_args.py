"""The CLI's argument converters refuse bad input at parse time, in one line, before any
setting is read or any broker is contacted."""

from __future__ import annotations

import pytest

from streams.cli import build_parser
from streams.cli.args import SessionArg


def refusal(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(list(argv))
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_payload_that_is_not_json_is_refused_naming_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = refusal(capsys, "submit", "tag_add", "--client", "c1", "--payload", "{not json")
    assert line.startswith("taskstream submit: argument --payload: not valid JSON")


def test_a_payload_that_is_not_an_object_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    line = refusal(capsys, "submit", "tag_add", "--client", "c1", "--payload", "[1]")
    assert "must be a JSON object, got list" in line


def test_the_payload_arrives_parsed() -> None:
    args = build_parser().parse_args(
        ["submit", "tag_add", "--client", "c", "--payload", '{"a": 1}']
    )
    assert args.payload == {"a": 1}
    assert build_parser().parse_args(["submit", "tag_add", "--client", "c"]).payload == {}


@pytest.mark.parametrize("text", ["s1", "s1:", "s1:c1:x", "a:b:c:d"])
def test_a_malformed_session_is_refused(capsys: pytest.CaptureFixture[str], text: str) -> None:
    line = refusal(capsys, "worker", "--simulated", "--session", text)
    assert line.startswith("taskstream worker: argument --session:")
    assert "SESSION_ID:CLIENT_ID" in line or "MAX_CONCURRENT must be a number" in line


def test_sessions_arrive_parsed() -> None:
    args = build_parser().parse_args(["worker", "--session", "s1:c1", "--session", "s2:c2:4"])
    assert args.session == [SessionArg("s1", "c1", 1), SessionArg("s2", "c2", 4)]


def test_a_handler_module_that_does_not_import_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = refusal(capsys, "worker", "--pool", "--handlers", "no_such_module_here")
    assert "cannot import handler module 'no_such_module_here'" in line


def test_a_handler_module_without_handlers_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    line = refusal(capsys, "worker", "--pool", "--handlers", "json:nothing_here")
    assert "json has no nothing_here" in line


def test_handlers_arrive_loaded() -> None:
    args = build_parser().parse_args(["worker", "--pool", "--handlers", "tests.chaos.handlers"])
    assert args.handlers and all(isinstance(h, dict) and h for h in args.handlers)


def test_a_missing_required_option_is_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    line = refusal(capsys, "submit", "tag_add")
    assert "--client" in line and "taskstream submit --help" in line
