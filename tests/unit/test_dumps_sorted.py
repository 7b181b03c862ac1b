"""``schemas.fields.dumps_sorted`` writes exactly what ``json.dumps`` writes with sorted keys
and compact separators (it is the wire's encoding of every JSON document and the digests')."""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.fields import dumps_sorted


def _reference(value: Any, default: Any = None) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=default)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
_documents = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_documents)
def test_the_same_text_as_json_dumps(value: Any) -> None:
    assert dumps_sorted(value) == _reference(value)
    assert dumps_sorted(value, default=str) == _reference(value, str)


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": {"d": [1, 2.5, None], "c": "é\u2028\ud800"}},
        {1: "int key", 2: True},
        {"nan": math.nan, "inf": -math.inf},
        [],
        "",
        {"t": (1, 2)},
    ],
)
def test_the_same_text_for_edge_cases(value: Any) -> None:
    assert dumps_sorted(value) == _reference(value)


def test_what_is_not_json_is_refused_unless_a_default_is_given() -> None:
    value = {"when": datetime.date(2026, 12, 3)}
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps_sorted(value)
    assert dumps_sorted(value, default=str) == _reference(value, str)


def test_mixed_key_types_are_refused_as_dumps_refuses_them() -> None:
    with pytest.raises(TypeError):
        _reference({1: "a", "b": 2})
    with pytest.raises(TypeError):
        dumps_sorted({1: "a", "b": 2})


def test_a_circular_document_is_a_value_error() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError):
        dumps_sorted(loop)
    # The encoder keeps no state from the failure: the next document is written as usual.
    assert dumps_sorted({"a": loop is not None}) == '{"a":true}'
