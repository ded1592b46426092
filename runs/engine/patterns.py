"""Regular expressions written by tenants run on RE2: linear time, bounded. Pure, no Django.

Python's ``re`` backtracks: ``(a+)+$`` on 29 ``a`` and a ``!`` takes about a minute and holds
the interpreter, so nothing else in the process runs. RE2 (``google-re2``) reads each
character once. It has no backreferences, lookaround, atomic groups or possessive repeats;
patterns using them are refused (``PatternError`` says so) when they are saved.

Bounds: a pattern is at most ``MAX_PATTERN_LENGTH`` characters and compiles to at most
``MAX_PATTERN_PROGRAM`` RE2 instructions (beyond about 1,600 a search can fall off RE2's DFA
and cost pattern size x text length: ``a{1000}a{1000}a{1000}a{1000}x`` took 4 s on 100,000
characters); text longer than ``MAX_MATCH_TEXT`` characters is not searched.

Used by conditions (router rules, loop ``until``) and, through ``install_in_jsonschema``, by
every JSON Schema ``pattern`` / ``patternProperties`` the jsonschema library checks (run
inputs, tool arguments and results, agent outputs, approval answers).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import re2

MAX_PATTERN_LENGTH = 1000  # characters of a pattern
MAX_PATTERN_PROGRAM = 1000  # RE2 instructions of a compiled pattern
MAX_MATCH_TEXT = 100_000  # characters a pattern is searched in

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is a user's mistake, not a log line
_MISSING = (
    "RE2 has no backreferences (\\1), lookahead or lookbehind ((?=, (?!, (?<=, (?<!), atomic "
    "groups or possessive repeats"
)


class PatternError(ValueError):
    """A pattern RE2 will not run: invalid, a feature RE2 lacks, too long or too complex."""


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern; ``PatternError`` saying what to change when it is refused."""
    shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"The regular expression {shown!r} is {len(pattern)} characters long: the limit is "
            f"{MAX_PATTERN_LENGTH}."
        )
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        if _python_accepts(pattern):
            raise PatternError(
                f"The regular expression {shown!r} uses a feature RE2 does not have ({reason}): "
                f"{_MISSING}."
            ) from None
        raise PatternError(f"Invalid regular expression {shown!r}: {reason}.") from None
    if compiled.programsize > MAX_PATTERN_PROGRAM:
        raise PatternError(
            f"The regular expression {shown!r} is too complex ({compiled.programsize} RE2 "
            f"instructions, the limit is {MAX_PATTERN_PROGRAM}): use fewer or shorter repeats."
        )
    return compiled


def _python_accepts(pattern: str) -> bool:
    # Only compiled, never run: tells "valid but not in RE2" from "not a regex at all".
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return False
    return True


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` occurs in ``text``. ``PatternError`` for a refused pattern or a
    text longer than ``MAX_MATCH_TEXT``."""
    if len(text) > MAX_MATCH_TEXT:
        raise PatternError(
            f"The text is {len(text):,} characters long; a regular expression reads at most "
            f"{MAX_MATCH_TEXT:,}."
        )
    return compile_pattern(pattern).search(text) is not None


def schema_patterns(schema: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    """Every ``(path, pattern)`` of a JSON Schema: ``pattern`` values, ``patternProperties``
    keys, in document order (``$.properties.code.pattern``)."""
    if isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from schema_patterns(item, f"{path}[{index}]")
        return
    if not isinstance(schema, Mapping):
        return
    for key, value in schema.items():
        where = f"{path}.{key}"
        if key == "pattern" and isinstance(value, str):
            yield where, value
        elif key == "patternProperties" and isinstance(value, Mapping):
            for name in value:
                yield f"{where}[{name!r}]", name
        if key in ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas"):
            if isinstance(value, Mapping):  # keys are names, values schemas
                for name, sub in value.items():
                    yield from schema_patterns(sub, f"{where}.{name}")
        elif key not in ("enum", "const", "examples", "default"):
            yield from schema_patterns(value, where)


def schema_pattern_problems(schema: Any, path: str = "$") -> list[tuple[str, str]]:
    """``(path, message)`` for each pattern of ``schema`` that RE2 will not run."""
    found = []
    for where, pattern in schema_patterns(schema, path):
        try:
            compile_pattern(pattern)
        except PatternError as exc:
            found.append((where, str(exc)))
    return found


class _JsonschemaRe:
    """What jsonschema's keyword modules call ``re``: ``search`` runs on RE2."""

    @staticmethod
    def search(pattern: str, string: str) -> bool:
        from jsonschema.exceptions import SchemaError

        if len(string) > MAX_MATCH_TEXT:
            return False  # not searched: "does not match", a validation error, never a hang
        try:
            return compile_pattern(pattern).search(string) is not None
        except PatternError as exc:
            raise SchemaError(str(exc)) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)


def install_in_jsonschema() -> None:
    """Make the jsonschema library match ``pattern`` and ``patternProperties`` with RE2.

    Its keywords call ``re.search(pattern, text)`` on the schema's pattern (a tenant's) and
    the instance (a caller's): the same hang as a router rule. Idempotent; called when the
    runs app starts and when the engine's validation is imported.
    """
    for name in ("jsonschema._keywords", "jsonschema._legacy_keywords", "jsonschema._utils"):
        module = importlib.import_module(name)
        if not hasattr(module, "re"):
            raise RuntimeError(f"{name} no longer imports re: check how it matches patterns")
        module.re = _JsonschemaRe()  # type: ignore[attr-defined]
