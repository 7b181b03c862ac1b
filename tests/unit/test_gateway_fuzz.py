"""Property-based fuzzing of the command gateway from the OpenAPI document (schemathesis): no
generated request, valid or not, gets a 5xx other than the documented 503 of a missing
dead-letter source; answers match the published schema."""

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

from api.view import create_app
from projections.memory import MemorySource
from projections.reader import ProjectionReader
from schemas import commands as cmd
from tests.support.view_scenario import scenario


class Recorder:
    def __init__(self) -> None:
        self.sent: list[cmd.Command] = []

    async def send(self, command: cmd.Command) -> None:
        self.sent.append(command)


def _app() -> object:
    source = MemorySource()
    for event in scenario():
        source.feed(event)
    source.flush()
    return create_app(ProjectionReader(source), commands=Recorder())


schema = (
    schemathesis.openapi.from_asgi("/openapi.json", _app())
    .include(method=["POST", "DELETE"])
    .exclude(path="/dlq/redrive")
)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_gateway_never_answers_5xx(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
