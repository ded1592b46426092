"""The limits on JSON that people send: the API's parser, the dashboard's JSON fields and the
websockets all read JSON through ``load``.

* Nesting at most ``settings.JSON_MAX_DEPTH`` levels (objects and arrays). Checked on the text
  before it is parsed and without recursion, so a 100,000-deep body costs one linear scan and
  never reaches a ``RecursionError`` in the parser or, later, in a step that walks the value.
* No NUL character (``\\u0000``) in any string or key: PostgreSQL cannot store it in ``jsonb``
  or ``text``, so it would otherwise fail deep inside a write as a 500.

Errors say where: a NUL is reported at its dotted path (``input.items.0.name``), the way API
validation errors name fields.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from django.conf import settings

NUL = "\x00"
# A JSON string: quotes around anything but quotes and backslashes, or escapes (unrolled loop,
# linear and non-recursive in the regex engine).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONInputError(ValueError):
    """JSON refused by a limit: ``code`` is ``too_deep`` or ``null_character``; ``path`` is the
    dotted path of the value at fault (``""`` for the document itself)."""

    def __init__(self, message: str, *, code: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.path = path


def max_depth() -> int:
    return settings.JSON_MAX_DEPTH


def nesting_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (0 for a scalar), without parsing.

    Brackets inside strings do not count. Text that is not JSON gives some number; the parser
    refuses it afterwards.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    # map/accumulate/max run in C: a few milliseconds per megabyte
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets))))


def too_deep_message(limit: int) -> str:
    return (
        f"The JSON nests more than {limit} levels of objects and arrays; flatten it "
        f"(the limit is the JSON_MAX_DEPTH setting)."
    )


def check_depth(text: str, *, limit: int | None = None) -> None:
    """Raise ``JSONInputError`` (``too_deep``) when ``text`` nests deeper than the limit."""
    limit = max_depth() if limit is None else limit
    if nesting_depth(text) > limit:
        raise JSONInputError(too_deep_message(limit), code="too_deep")


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def find_nul(value: Any) -> JSONInputError | None:
    """The first NUL character in a parsed JSON value's strings or keys, as an error with its
    path; None when there is none. Iterative: the depth of ``value`` does not matter."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return JSONInputError(
                    "Remove the NUL character (\\u0000) from this text: it cannot be stored.",
                    code="null_character",
                    path=path,
                )
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                if NUL in key:
                    shown = key.replace(NUL, "\\u0000")
                    return JSONInputError(
                        f"Remove the NUL character (\\u0000) from the key '{shown}': it cannot "
                        "be stored.",
                        code="null_character",
                        path=_join(path, shown),
                    )
                stack.append((_join(path, key), child))
        elif isinstance(item, list):
            stack.extend((_join(path, i), child) for i, child in reversed(list(enumerate(item))))
    return None


def check_nul(text: str, value: Any) -> None:
    """Raise ``JSONInputError`` (``null_character``) for a NUL in ``value`` (parsed from
    ``text``)."""
    # a NUL can only come from a \u0000 escape: JSON forbids raw control characters in strings
    if "\\u0000" in text or NUL in text:
        error = find_nul(value)
        if error is not None:
            raise error


def load(text: str | bytes, *, limit: int | None = None, **kwargs: Any) -> Any:
    """``json.loads`` behind the limits: the depth is checked before parsing, NULs after.

    Raises ``JSONInputError`` for a limit and ``json.JSONDecodeError`` for text that is not
    JSON (``UnicodeDecodeError`` for bytes that are not UTF-8).
    """
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    check_depth(text, limit=limit)
    value = json.loads(text, **kwargs)
    check_nul(text, value)
    return value
