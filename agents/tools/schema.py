"""JSON Schemas of tools: is a schema usable, how does a value violate one, and the one
``invalid_arguments`` / ``invalid_output`` error. Schemas are compiled once (LRU cache)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable

from agents.tools.errors import ToolError
from controlplane import hooks

MAX_ERRORS_REPORTED = 20


def json_path(parts: Iterable[Any]) -> str:
    """``$.items[0].name`` for the path parts ``["items", 0, "name"]``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_FORMATS = FormatChecker()


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    # Compiled once per distinct schema: every tool call validates its input and output.
    return _compiled(json.dumps(schema, sort_keys=True))


@functools.lru_cache(maxsize=2048)
def _compiled(schema_json: str) -> Draft202012Validator:
    # An empty registry: "$ref" resolves inside the schema only, never by fetching a URL.
    return Draft202012Validator(
        json.loads(schema_json), registry=Registry(), format_checker=_FORMATS
    )


def validate_schema(schema: Any, *, require_object: bool = False) -> list[str]:
    """Why ``schema`` is not a usable JSON Schema (Draft 2020-12); empty when it is.

    Each problem names its place in the schema (``$.properties.age.type: ...``), so an API
    can answer 400 field by field. With ``require_object`` the root must describe a JSON
    object (tool arguments and results always are).
    """
    if not isinstance(schema, dict):
        return ["A JSON Schema must be a JSON object ({} accepts anything)."]
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    errors = sorted(meta.iter_errors(schema), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [f"{json_path(e.absolute_path)}: {e.message}" for e in errors[:MAX_ERRORS_REPORTED]]
    if not problems:
        # the engine's RE2 pattern checks, registered by runs at start-up
        found = hooks.schema_pattern_problems.call(schema)
        problems = [f"{path}: {message}" for pairs in found for path, message in pairs]
    if not problems and require_object:
        declared = schema.get("type")
        types = declared if isinstance(declared, list) else [declared]
        if declared is not None and "object" not in types:
            problems.append('$.type: the root must describe an object (use "type": "object").')
    return problems


def validation_errors(schema: dict[str, Any], instance: Any) -> list[dict[str, str]]:
    """Every way ``instance`` violates ``schema``, as ``{"path", "message"}``, in path order.

    Raises ``ToolError(invalid_schema)`` when the schema itself is broken.
    """
    if not schema:
        return []
    try:
        found = list(_validator(schema).iter_errors(instance))
    except (SchemaError, Unresolvable) as exc:
        raise ToolError(
            f"The tool's JSON Schema cannot be used: {exc}. Fix the schema on the tool.",
            code="invalid_schema",
        ) from None
    found.sort(key=lambda e: [str(p) for p in e.absolute_path])
    return [{"path": json_path(e.absolute_path), "message": e.message} for e in found]


def raise_if_invalid(errors: list[dict[str, str]], *, what: str, code: str, tool_slug: str) -> None:
    """Raise ``ToolError(code)`` listing the first ``MAX_ERRORS_REPORTED`` of ``errors``, if any."""
    if not errors:
        return
    shown = errors[:MAX_ERRORS_REPORTED]
    listing = "; ".join(f"{e['path']}: {e['message']}" for e in shown)
    more = f" (and {len(errors) - len(shown)} more)" if len(errors) > len(shown) else ""
    raise ToolError(
        f"Invalid {what} for tool {tool_slug!r}: {listing}{more}.",
        code=code,
        details={"errors": shown},
    )
