"""End-to-end tests: the whole stack in one event loop, driven through a real browser."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives the running stack through a real browser")
