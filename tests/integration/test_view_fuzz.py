"""Property-based fuzzing of the HTTP view from its own OpenAPI document (schemathesis):
no generated request, valid or not, gets a 5xx; answers match the published schema. The command
gateway is mounted (its commands go to a recorder, not a broker), so its routes are fuzzed too."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.gateway import mount
from api.gateway_context import Gateway
from api.view import create_app
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas.catalog import load_catalog
from schemas.commands import Command
from streams.redrive import DeadLetterEntry
from tests.support.view_scenario import scenario


class Recorder:
    """Takes the gateway's commands in place of the SDK client."""

    def __init__(self) -> None:
        self.sent: list[Command] = []

    async def send(self, command: Command) -> None:
        self.sent.append(command)


def _app() -> object:
    source = MemorySource()
    for event in scenario():
        source.feed(event)
    source.flush()
    reader = ProjectionReader(source)
    app = create_app(reader)

    async def dead_letters() -> list[DeadLetterEntry]:
        return []

    gateway = Gateway(
        reader,
        Recorder(),
        catalog=load_catalog(),
        max_payload_bytes=65536,
        dead_letters=dead_letters,
    )
    mount(app, gateway)
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_view_never_answers_5xx(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
