"""The routes an app serves, for tests that must visit every one of them."""

from __future__ import annotations

from fastapi import FastAPI


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(path, METHOD) of every route in the OpenAPI document, included routers too; paths as
    the document writes them (``/tasks/{task_id}``)."""
    return {
        (path, method.upper())
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
