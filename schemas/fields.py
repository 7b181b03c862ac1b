"""Field types shared by the pydantic mirrors of the Avro schemas."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from functools import partial
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, PlainSerializer
from pydantic_core import from_json

MAX_ID_LENGTH: Final = 512
"""Longest id or name a command may carry (client, task, session, batch, agent, operation,
capability). Ids are store keys and are quoted in events and dead letters: a bound keeps every
record derived from a command within the record limit."""

MAX_JSON_DEPTH: Final = 128
"""Nesting bound of every JSON document on the wire. Deeper documents are refused at the edge
(a ``DecodeError`` for bytes, a validation error for models): the standard library's JSON
encoder and decoder recurse, so an unbounded document would crash whichever process touched it
next with a ``RecursionError``."""

MAX_INPUT_JSON_DEPTH: Final = 64
"""Nesting bound of the documents submitters and executors send (payloads, outputs). Lower
than ``MAX_JSON_DEPTH`` so the documents built from them (a batch's consolidated output wraps
each item's output once more) always fit."""


# A UTF-16 surrogate escape in JSON text (``\\ud800``); paired ones decode to one code point.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Text where a number may overflow to infinity (an exponent, or more digits than a finite float
# has) or exceed ``int``'s digit limit: read by the standard library alone (see ``_loads``).
_BIG_NUMBER = re.compile(r"[0-9.][eE]|[0-9]{309}")


def _check(value: Any, limit: int, strings: bool) -> None:
    """Refuse documents deeper than ``limit`` and (with ``strings``) strings that hold an
    unpaired surrogate: they are not Unicode, so no UTF-8 encoder (the read side's JSON rows,
    HTTP answers) can write them. Iterative: a hostile document cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > limit:
                raise ValueError(f"JSON document nested deeper than {limit} levels")
            for key, child in node.items():
                if strings and isinstance(key, str) and _SURROGATE.search(key):
                    raise ValueError(_UNPAIRED)
                stack.append((child, depth + 1))
        elif isinstance(node, list | tuple):
            if depth > limit:
                raise ValueError(f"JSON document nested deeper than {limit} levels")
            stack.extend((child, depth + 1) for child in node)
        elif strings and isinstance(node, str) and _SURROGATE.search(node):
            raise ValueError(_UNPAIRED)
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError(_NOT_FINITE)


_UNPAIRED = "JSON document holds an unpaired UTF-16 surrogate (not valid Unicode)"
_NOT_FINITE = "JSON document holds NaN or Infinity (not JSON: other readers refuse it)"


def _refuse_constant(name: str) -> Any:
    raise ValueError(_NOT_FINITE)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError(_NOT_FINITE)
    return value


def _parse_json(value: Any, *, limit: int) -> Any:
    if value == _EMPTY or value == "{}":  # the default of most documents: nothing to check
        return {}
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, str):
        # Cheap scans of the text decide which checks the parsed document needs.
        deep = value.count("[") + value.count("{") > limit
        strings = (
            _SURROGATE_ESCAPE.search(value) is not None or _SURROGATE.search(value) is not None
        )
        value = _loads(value, limit)
        if deep or strings:
            _check(value, limit, strings)
        return value
    _check(value, limit, True)
    return value


def _loads(text: str, limit: int) -> Any:
    """``json.loads`` with NaN, infinities and overflowing numbers refused, most of the time
    by pydantic-core's parser (a tenth of the cost). It refuses the NaN and infinity literals
    and reads every other document it accepts as the standard library does; the text it
    refuses or might read differently (a number that could overflow, a lone surrogate, a
    nesting it will not follow) goes to the standard library, whose answer or error stands."""
    if _BIG_NUMBER.search(text) is None:
        try:
            return from_json(text, allow_inf_nan=False)
        except (ValueError, TypeError):  # TypeError: a lone surrogate in the text
            pass
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"JSON document nested deeper than {limit} levels") from None


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder(default: Callable[[Any], Any]) -> Callable[[Any], str] | None:
    """The standard library's C encoder, made once: what ``json.dumps(value, sort_keys=True,
    separators=(",", ":"), default=default)`` writes, at a third of its cost (``dumps`` builds
    an encoder object per call). Built without the circular-reference markers, which a shared
    encoder cannot keep (an error midway leaves them set); a cycle, or a document deeper than
    the interpreter's recursion limit, raises ``ValueError`` as ``dumps`` would."""
    if c_make_encoder is None:  # no C accelerator: the standard library's own path
        return None
    make = c_make_encoder(None, default, encode_basestring_ascii, None, ":", ",", True, False, True)

    def encode(value: Any) -> str:
        try:
            return "".join(make(value, 0))
        except RecursionError:
            raise ValueError("JSON document is circular or nested too deeply") from None

    return encode


_SORTED = _encoder(_not_json)
_SORTED_STR = _encoder(str)


def dumps_sorted(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """Compact JSON with sorted keys (the wire's and the digests' canonical form), exactly as
    ``json.dumps(value, sort_keys=True, separators=(",", ":"), default=default)``; ``default``
    is None (refuse what is not JSON) or ``str``."""
    encode = _SORTED if default is None else _SORTED_STR if default is str else None
    if encode is None:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=default)
    return encode(value)


def _dump_json(value: Any) -> str:
    if value == _EMPTY:
        return "{}"
    return dumps_sorted(value)


_EMPTY: Final[dict[str, Any]] = {}


# On the wire a JSON document travels as an Avro string; in Python it is a dict.
JsonObject = Annotated[
    dict[str, Any],
    BeforeValidator(partial(_parse_json, limit=MAX_JSON_DEPTH)),
    PlainSerializer(_dump_json),
]
# The same, for documents that come from outside (task payloads, executor outputs).
JsonInput = Annotated[
    dict[str, Any],
    BeforeValidator(partial(_parse_json, limit=MAX_INPUT_JSON_DEPTH)),
    PlainSerializer(_dump_json),
]
