"""``taskstream bench``: the benchmark suite, which lives in the source checkout, not in the wheel.

The suite and its harness (top-level ``bench/``) are tools of a checkout: they start brokers and
whole stacks and need the checkout's files (``bench/peers``, ``tools/kafka``). ``taskstream
bench`` finds them in the checkout this ``streams`` package is imported from (an editable
install, or a checkout on ``sys.path``), else in the current directory, and then registers the
suite's own arguments. Without a checkout, ``taskstream bench`` still parses and says, in one
line, where the suite lives and how to run it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from streams.errors import ConfigurationError
from streams.settings import Settings


def checkout_roots() -> list[Path]:
    """Where a checkout may be: the one holding this ``streams`` package, the current directory."""
    import streams

    return [Path(streams.__file__).resolve().parents[1], Path.cwd()]


def find_bench(roots: Sequence[Path]) -> ModuleType | None:
    """``bench.main`` from the first root that holds ``bench/main.py`` (put on ``sys.path``)."""
    for root in roots:
        if (root / "bench" / "main.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            return importlib.import_module("bench.main")
    return None


def register(sub: Any, roots: Sequence[Path] | None = None) -> None:
    searched = list(roots if roots is not None else checkout_roots())
    try:
        bench = find_bench(searched)
    except Exception as exc:  # a broken suite must not take the other commands down with it
        problem = f"the benchmark suite in this checkout does not import: {exc}"
    else:
        if bench is not None:
            bench.register(sub)
            return
        places = " or ".join(str(root / "bench") for root in dict.fromkeys(searched))
        problem = (
            "the benchmark suite lives in the bench/ directory of a taskstream source "
            f"checkout, and there is none at {places}: run `taskstream bench` from a checkout "
            "(or `bench/run.sh` there)"
        )

    def missing(args: argparse.Namespace, settings: Settings) -> int:
        raise ConfigurationError(problem)

    # Any arguments (the suite's own options included) reach the handler, which says where
    # the suite lives instead of refusing an option it cannot know.
    p = sub.add_parser(
        "bench",
        help="measure the runtime against the raw Kafka ceiling and faust-streaming "
        "(needs a source checkout)",
        prefix_chars="\0",
        add_help=False,
    )
    p.add_argument("suite_args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=missing)
