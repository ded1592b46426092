"""Conditions for router rules and loop ``until``: pure data in, a bool out. No Django, no I/O.

A condition is ``{"path": "output.done", "op": "eq", "value": true}``; a list of conditions
means all of them (an empty list is vacuously true). ``path`` is dotted with ``[n]`` list
indexes (``input.items[0].name``; a negative index counts from the end) and is resolved
in the scope the caller gives (a dict of names such as ``input`` or ``output``).

Ops: ``eq`` / ``ne`` (JSON equality: ``true`` is not ``1``, ``1`` equals ``1.0``), ``in`` /
``not_in`` (the value at ``path`` is an element of the list ``value``, a substring of the
string ``value`` or a key of the object ``value``), ``contains`` (the reverse: the list at
``path`` holds ``value``, the string at ``path`` contains it, the object has it as a key),
``matches`` (an RE2 regular expression found anywhere in the string, strings only), ``gt``
/ ``gte`` / ``lt`` / ``lte`` (numbers with numbers, strings with strings; anything else is
false), ``exists`` and ``missing``. A path that does not resolve makes every op false except
``missing``; a ``null`` value does exist.

Patterns come from tenants, so they run on RE2 (``runs.engine.patterns``), whose matching time
is linear in the text: no backtracking pattern such as ``(a+)+$`` can hold a worker. Patterns
RE2 lacks features for (backreferences, lookaround), too long or too complex are refused when
the workflow is saved; ``matches`` reads text of at most ``MAX_MATCH_TEXT`` characters, and a
longer value fails the step with an error naming the limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from runs.engine.patterns import (  # noqa: F401 (re-exported)
    MAX_MATCH_TEXT,
    MAX_PATTERN_LENGTH,
    MAX_PATTERN_PROGRAM,
    PatternError,
    compile_pattern,
)

OPS = (
    "eq",
    "ne",
    "in",
    "not_in",
    "contains",
    "matches",
    "gt",
    "gte",
    "lt",
    "lte",
    "exists",
    "missing",
)
VALUELESS_OPS = frozenset({"exists", "missing"})


PATH_PATTERN = r"^[^.\[\]\s]+(?:\.[^.\[\]\s]+|\[-?[0-9]+\])*$"
_SEGMENT = re.compile(r"\.?([^.\[\]\s]+)|\[(-?[0-9]+)\]")
_PATH = re.compile(PATH_PATTERN)

_ONE_CONDITION: dict[str, Any] = {
    "type": "object",
    "description": "One test of a value in scope.",
    "required": ["path", "op"],
    "additionalProperties": False,
    "properties": {
        "path": {
            "type": "string",
            "pattern": PATH_PATTERN,
            "description": (
                "Dotted path into the scope, with [n] list indexes, e.g. input.category, "
                "output.items[0].done. A path that does not resolve makes every op false "
                "except 'missing'."
            ),
        },
        "op": {
            "enum": list(OPS),
            "description": (
                "eq, ne: JSON equality. in, not_in: the value at path is in `value` (list "
                "element, substring, object key). contains: the list/string/object at path "
                "holds `value`. matches: RE2 regular expression found in a string (no "
                "backreferences or lookaround; text of at most 100,000 characters). "
                "gt, gte, lt, lte: numbers with numbers, strings with strings. exists, "
                "missing: whether path resolves (no `value`)."
            ),
        },
        "value": {"description": "What to compare with; not used by exists and missing."},
    },
    "allOf": [
        {
            "if": {
                "properties": {"op": {"not": {"enum": sorted(VALUELESS_OPS)}}},
                "required": ["op"],
            },
            "then": {"required": ["value"]},
        },
        {
            "if": {"properties": {"op": {"enum": ["in", "not_in"]}}, "required": ["op"]},
            "then": {"properties": {"value": {"type": ["array", "string", "object"]}}},
        },
        {
            "if": {"properties": {"op": {"const": "matches"}}, "required": ["op"]},
            "then": {"properties": {"value": {"type": "string"}}},
        },
        {
            "if": {"properties": {"op": {"enum": ["gt", "gte", "lt", "lte"]}}, "required": ["op"]},
            "then": {"properties": {"value": {"type": ["number", "string"]}}},
        },
    ],
}

CONDITION_SCHEMA: dict[str, Any] = {
    "description": "A condition, or a non-empty list of conditions that must all hold.",
    "type": ["object", "array"],
    "if": {"type": "array"},
    "then": {"type": "array", "minItems": 1, "items": _ONE_CONDITION},
    "else": _ONE_CONDITION,
}


class ConditionError(ValueError):
    """A condition that cannot be evaluated: bad shape, unknown op, bad path or regex."""


MISSING: Any = object()  # what ``resolve`` returns for a path that does not resolve


@lru_cache(maxsize=1024)
def parse_path(path: str) -> tuple[str | int, ...]:
    """``"a.b[0]"`` -> ``("a", "b", 0)``. Raises ``ConditionError`` for a malformed path."""
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise ConditionError(f"Malformed path {path!r}: use dotted names with [n] indexes.")
    parts: list[str | int] = []
    for name, index in _SEGMENT.findall(path):
        parts.append(int(index) if index else name)
    return tuple(parts)


def resolve(path: str, scope: Mapping[str, Any]) -> Any:
    """The value at ``path`` in ``scope``, or ``MISSING`` when the path does not resolve.

    Names step into objects; ``[n]`` (or a purely numeric name) steps into lists. Anything
    that does not resolve (absent key, index out of range, stepping into a scalar) is
    missing; use ``exists`` / ``missing`` to tell.
    """
    current: Any = scope
    for part in parse_path(path):
        if isinstance(current, Mapping):
            if isinstance(part, int) or part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list):
            if isinstance(part, str):
                if not part.isdigit():
                    return MISSING
                part = int(part)
            if not -len(current) <= part < len(current):
                return MISSING
            current = current[part]
        else:
            return MISSING
    return current


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON means it: booleans equal only booleans, 1 == 1.0, deep for containers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _member(item: Any, container: Any) -> bool:
    if isinstance(container, list):
        return any(json_equal(item, x) for x in container)
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container
    return False


def _compare(op: str, actual: Any, expected: Any) -> bool:
    comparable = (_is_number(actual) and _is_number(expected)) or (
        isinstance(actual, str) and isinstance(expected, str)
    )
    if not comparable:
        return False
    if op == "gt":
        return actual > expected
    if op == "gte":
        return actual >= expected
    if op == "lt":
        return actual < expected
    return actual <= expected


@lru_cache(maxsize=512)
def _regex(pattern: str) -> Any:
    try:
        return compile_pattern(pattern)
    except PatternError as exc:
        raise ConditionError(str(exc)) from None


def _search(pattern: str, text: str, path: str) -> bool:
    if len(text) > MAX_MATCH_TEXT:
        raise ConditionError(
            f"'matches' on {path}: the text is {len(text):,} characters long; a regular "
            f"expression reads at most {MAX_MATCH_TEXT:,}."
        )
    return _regex(pattern).search(text) is not None


def _check_shape(condition: Any) -> None:
    if not isinstance(condition, Mapping):
        raise ConditionError("A condition is an object with path and op (or a list of them).")
    op = condition.get("op")
    if op not in OPS:
        raise ConditionError(f"Unknown op {op!r}: use one of {', '.join(OPS)}.")
    if op not in VALUELESS_OPS and "value" not in condition:
        raise ConditionError(f"Op {op!r} needs a value.")
    path = condition.get("path")
    if not isinstance(path, str):
        raise ConditionError("A condition needs a path (a string).")
    parse_path(path)
    if op == "matches":
        if not isinstance(condition["value"], str):
            raise ConditionError("Op 'matches' needs a string value (a regular expression).")
        _regex(condition["value"])


def _evaluate_one(condition: Mapping[str, Any], scope: Mapping[str, Any]) -> bool:
    op = condition["op"]
    actual = resolve(condition.get("path"), scope)
    if op == "missing":
        return actual is MISSING
    if actual is MISSING:
        return False
    if op == "exists":
        return True
    expected = condition["value"]
    if op == "eq":
        return json_equal(actual, expected)
    if op == "ne":
        return not json_equal(actual, expected)
    if op == "in":
        return _member(actual, expected)
    if op == "not_in":
        return not _member(actual, expected)
    if op == "contains":
        return _member(expected, actual)
    if op == "matches":
        return isinstance(actual, str) and _search(expected, actual, condition["path"])
    return _compare(op, actual, expected)


def evaluate(condition: Any, scope: Mapping[str, Any]) -> bool:
    """Whether ``condition`` (one condition or a list meaning all) holds in ``scope``.

    Returns a bool for a condition valid against ``CONDITION_SCHEMA`` with a pattern RE2
    accepts; raises ``ConditionError`` otherwise (``validate_definition`` reports those
    problems at save time) and when ``matches`` meets text longer than ``MAX_MATCH_TEXT``.
    """
    items = condition if isinstance(condition, list) else [condition]
    for one in items:  # every item is checked, whatever the values in scope
        _check_shape(one)
    return all(_evaluate_one(one, scope) for one in items)


def problems(condition: Any) -> list[tuple[str, str]]:
    """What ``CONDITION_SCHEMA`` cannot check: regexes that do not compile, malformed paths.

    Returns ``(relative path, message)`` pairs, the path relative to the condition (``""``
    for a single condition, ``"[1]"`` for the second of a list, with ``.value`` / ``.path``
    appended). Shapes the schema already rejects are skipped, not reported twice.
    """
    found: list[tuple[str, str]] = []
    items = enumerate(condition) if isinstance(condition, list) else [(None, condition)]
    for index, one in items:
        if not isinstance(one, Mapping):
            continue
        base = "" if index is None else f"[{index}]"
        path = one.get("path")
        if isinstance(path, str):
            try:
                parse_path(path)
            except ConditionError as exc:
                found.append((f"{base}.path", str(exc)))
        value = one.get("value")
        if one.get("op") == "matches" and isinstance(value, str):
            try:
                _regex(value)
            except ConditionError as exc:
                found.append((f"{base}.value", str(exc)))
    return found
