"""The filters and tests templates may use, and the conversion of results to JSON. Pure.

The filters that build text or lists are wrapped so what they build is size-checked and
charged to the render (see ``limits``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sized
from typing import Any

from jinja2 import pass_eval_context
from jinja2.filters import FILTERS as _JINJA_FILTERS
from jinja2.runtime import Undefined
from jinja2.tests import TESTS as _JINJA_TESTS

from runs.engine.templating.errors import Problem
from runs.engine.templating.limits import built, charge, size_of, within


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON (str, not a str subclass), charged to the render; ``Problem``
    for what JSON cannot hold (NaN, non-text keys, other types) or an undefined value."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Problem(f"gives {value}, which is not a JSON number")
        return value
    if isinstance(value, str):
        return value if type(value) is str else str(value)
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, list | tuple):
        charge(len(value))
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        charge(len(value))
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise Problem(f"gives an object with the key {key!r}: JSON keys are text")
            out[str(key)] = jsonable(item)
        return out
    raise Problem(f"gives a {type(value).__name__}, which is not JSON")


def _tojson(value: Any, indent: int | None = None) -> str:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    within(size_of(value), "the result of tojson")
    text = json.dumps(jsonable(value), ensure_ascii=False, indent=indent)
    return built(text, "the result of tojson")


@pass_eval_context
def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    if isinstance(value, Sized) and isinstance(d, str):
        within(size_of(value) + len(d) * max(0, len(value) - 1), "the result of join")
    return built(_JINJA_FILTERS["join"](eval_ctx, value, d, attribute), "the result of join")


def _text_filter(name: str) -> Any:
    # these turn any value into text (str() of a list is as long as the list printed)
    original = _JINJA_FILTERS[name]

    def bounded(value: Any, *args: Any) -> str:
        within(size_of(value), f"the result of {name}")
        return built(original(value, *args), f"the result of {name}")

    bounded.__name__ = f"bounded_{name}"
    return bounded


_FILTER_NAMES = (
    "default",
    "length",
    "join",
    "lower",
    "upper",
    "first",
    "last",
    "trim",
    "string",
    "int",
    "float",
    "round",
    "abs",
)
FILTERS: dict[str, Any] = {name: _JINJA_FILTERS[name] for name in _FILTER_NAMES}
FILTERS.update({name: _text_filter(name) for name in ("lower", "upper", "trim", "string")})
FILTERS["join"] = _join
FILTERS["tojson"] = _tojson

_TEST_NAMES = (
    "defined",
    "undefined",
    "none",
    "boolean",
    "number",
    "integer",
    "float",
    "string",
    "mapping",
    "sequence",
)
TESTS: dict[str, Any] = {name: _JINJA_TESTS[name] for name in _TEST_NAMES}
