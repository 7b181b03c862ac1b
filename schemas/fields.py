"""Field types shared by the pydantic mirrors of the Avro schemas."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer


def _parse_json(value: Any) -> Any:
    if isinstance(value, (str, bytes, bytearray)):
        return json.loads(value)
    return value


def _dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# On the wire a JSON document travels as an Avro string; in Python it is a dict.
JsonObject = Annotated[dict[str, Any], BeforeValidator(_parse_json), PlainSerializer(_dump_json)]
