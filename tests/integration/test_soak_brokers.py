"""The soak runs on the broker it is told to start (a short soak at a low rate, no timings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import main

pytestmark = pytest.mark.integration


def test_a_short_soak_on_the_embedded_broker(tmp_path: Path) -> None:
    out = tmp_path / "soak.md"
    argv = ["--broker", "embedded", "--minutes", "0.2", "--rate", "20"]
    assert main([*argv, "--workdir", str(tmp_path / "w"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## embedded broker (Tansu)" in text and "## Apache Kafka" not in text
    # What the broker itself answered, not the name we gave it.
    assert "answered the profile probe as `embedded`" in text
    assert "broker RSS (MiB)" in text
    assert "0 submit errors" in text
