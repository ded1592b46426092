"""The json_extract built-in: a value out of a JSON document by a path like "items[0].name"."""

from __future__ import annotations

import re
from typing import Any

from agents.choices import Risk
from agents.tools.base import ToolContext, ToolError
from agents.tools.builtin.spec import BuiltinSpec

_PATH_TOKEN = re.compile(
    r"""\.?(?P<name>[^.\[\]"']+)"""
    r"""|\[(?P<index>-?\d+)\]"""
    r"""|\[(?P<star>\*)\]"""
    r"""|\[(?P<q>["'])(?P<quoted>(?:(?!(?P=q)).)*)(?P=q)\]"""
)
_WILDCARD = object()


def parse_path(path: str) -> list[Any]:
    """``items[0].name`` -> ``["items", 0, "name"]``; ``[*]`` is a wildcard over a list."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    tokens: list[Any] = []
    position = 0
    while position < len(text):
        match = _PATH_TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ToolError(
                f"The path {path!r} cannot be read at position {position + 1}: use names "
                'separated by dots, [0] for list items, [*] for every item, ["a.b"] for odd keys.',
                code="invalid_arguments",
                details={"errors": [{"path": "$.path", "message": "unreadable path"}]},
            )
        if match.group("name") is not None:
            tokens.append(match.group("name").strip())
        elif match.group("index") is not None:
            tokens.append(int(match.group("index")))
        elif match.group("star") is not None:
            tokens.append(_WILDCARD)
        else:
            tokens.append(match.group("quoted"))
        position = match.end()
    return tokens


def _step(value: Any, token: Any) -> tuple[bool, Any]:
    if isinstance(token, int) or (isinstance(token, str) and re.fullmatch(r"-?\d+", token)):
        if isinstance(value, list):
            index = int(token)
            if -len(value) <= index < len(value):
                return True, value[index]
            return False, None
        if isinstance(value, dict) and str(token) in value:
            return True, value[str(token)]
        return False, None
    if isinstance(value, dict) and token in value:
        return True, value[token]
    return False, None


def extract(document: Any, tokens: list[Any]) -> tuple[bool, Any]:
    """Follow ``tokens`` into ``document``; ``(found, value)``, a list of matches after ``[*]``."""
    for position, token in enumerate(tokens):
        if token is _WILDCARD:
            items = (
                document
                if isinstance(document, list)
                else list(document.values())
                if isinstance(document, dict)
                else None
            )
            if items is None:
                return False, None
            rest = tokens[position + 1 :]
            matches = [value for found, value in (extract(i, rest) for i in items) if found]
            return True, matches
        found, document = _step(document, token)
        if not found:
            return False, None
    return True, document


def _unreadable(message: str, why: str) -> ToolError:
    return ToolError(
        message,
        code="invalid_arguments",
        details={"errors": [{"path": "$.document", "message": why}]},
    )


def json_extract(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """The value at ``path`` in ``document`` (JSON text is parsed first)."""
    import json

    document = arguments["document"]
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            raise _unreadable(
                "The document is a string but not JSON text; pass the JSON value itself.",
                "not JSON text",
            ) from None
        except RecursionError:
            raise _unreadable(
                "The document is nested too deeply to read.", "nested too deeply"
            ) from None
    found, value = extract(document, parse_path(arguments["path"]))
    if not found:
        return {"found": False, "value": arguments.get("default")}
    return {"found": True, "value": value}


JSON_EXTRACT_INPUT = {
    "type": "object",
    "properties": {
        "document": {"description": "A JSON value, or JSON text to parse."},
        "path": {"type": "string", "maxLength": 500, "examples": ["items[0].name", "rows[*].id"]},
        "default": {"description": "Returned as value when nothing is at the path."},
    },
    "required": ["document", "path"],
    "additionalProperties": False,
}
JSON_EXTRACT_OUTPUT = {
    "type": "object",
    "properties": {"found": {"type": "boolean"}, "value": {}},
    "required": ["found", "value"],
}


SPEC = BuiltinSpec(
    name="json_extract",
    description='Extract a value from a JSON document by a path like "items[0].name" '
    "(use [*] for every item of a list).",
    input_schema=JSON_EXTRACT_INPUT,
    output_schema=JSON_EXTRACT_OUTPUT,
    risk=Risk.READ,
    fn=json_extract,
)
