"""``taskstream bench``: the benchmark suite (its arguments and runner live with the bench)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    from streams.bench import main as bench

    bench.register(sub)
