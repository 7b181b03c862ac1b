"""``taskstream bench`` reaches the suite in the source checkout, and says so when there is none."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from schemas.errors import TaskstreamError
from streams.cli import bench as bench_cli
from streams.settings import Settings


def parser_with(roots: list[Path]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskstream")
    bench_cli.register(parser.add_subparsers(dest="command"), roots=roots)
    return parser


def test_the_checkout_of_this_package_holds_the_suite() -> None:
    root = bench_cli.checkout_roots()[0]
    assert (root / "bench" / "main.py").is_file()
    args = parser_with([root]).parse_args(["bench", "--only", "ceiling", "--events", "10"])
    assert args.only == ["ceiling"] and args.events == 10


def test_without_a_checkout_bench_says_where_the_suite_lives(tmp_path: Path) -> None:
    args = parser_with([tmp_path]).parse_args(["bench", "--only", "ceiling", "--events", "10"])
    assert args.suite_args == ["--only", "ceiling", "--events", "10"]
    with pytest.raises(TaskstreamError) as refused:
        args.handler(args, Settings())
    message = str(refused.value)
    assert "bench/ directory of a taskstream source checkout" in message
    assert str(tmp_path / "bench") in message


def test_a_suite_that_does_not_import_leaves_the_other_commands_working(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "main.py").write_text("raise RuntimeError('half-edited')\n")
    (tmp_path / "bench" / "__init__.py").write_text("")
    parser = argparse.ArgumentParser(prog="taskstream")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("other").set_defaults(handler=None)
    import sys

    saved = {
        name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "bench"
    }
    try:
        bench_cli.register(sub, roots=[tmp_path])
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "bench"]:
            del sys.modules[name]
        sys.modules.update(saved)
        sys.path.remove(str(tmp_path))
    assert parser.parse_args(["other"]).command == "other"
    args = parser.parse_args(["bench", "--events", "5"])
    with pytest.raises(TaskstreamError, match="does not import: half-edited"):
        args.handler(args, Settings())
