"""Rendering: templated JSON evaluated over a scope, within the render's work budget. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Undefined

from runs.engine.templating.errors import Problem, TemplateError, join_path, quote
from runs.engine.templating.filters import jsonable
from runs.engine.templating.limits import MAX_SEQUENCE_LENGTH, charge, current_work, size_of
from runs.engine.templating.parsing import Expr, compiled, parse


def evaluate(expression: Expr, scope: Mapping[str, Any], path: str) -> Any:
    """The JSON value of one expression over ``scope``; ``TemplateError`` at ``path``."""
    label = f"{{{{ {quote(expression.source)} }}}}"
    try:
        value = compiled(expression.source)(scope)
        if isinstance(value, Undefined):
            raise Problem(value._undefined_message)
        return jsonable(value)
    except (Problem, UndefinedError, SecurityError) as exc:
        raise TemplateError(path, f"{label}: {exc}") from None
    except Exception as exc:  # any other failure of user-written arithmetic or filters
        raise TemplateError(path, f"{label}: {type(exc).__name__}: {exc}") from None


def _render_string(source: str, scope: Mapping[str, Any], path: str) -> Any:
    parsed = parse(source, path)
    single = parsed.single
    if single is not None:
        return evaluate(single, scope, path)
    parts, length = [], 0
    for segment in parsed.segments:
        if isinstance(segment, str):
            parts.append(segment)
        else:
            value = evaluate(segment, scope, path)
            if not isinstance(value, str):
                _check_text(length + size_of(value), path)
                value = json.dumps(value, ensure_ascii=False)
            parts.append(value)
        length += len(parts[-1])
        _check_text(length, path)
    charge(length)
    return "".join(parts)


def _check_text(length: int, path: str) -> None:
    if length > MAX_SEQUENCE_LENGTH:
        raise TemplateError(
            path,
            f"the text would be too long: more than {MAX_SEQUENCE_LENGTH:,} characters "
            "(MAX_SEQUENCE_LENGTH)",
        )


def render(value: Any, scope: Mapping[str, Any], path: str = "") -> Any:
    """``value`` with every template string evaluated over ``scope``; the result is JSON.

    Guarantees: non-template values come back equal (strings without ``{{`` untouched,
    object keys never rendered); a string that is exactly one ``{{ ... }}`` gives the value
    with its JSON type, any other template string gives text; the result may share
    sub-objects with ``scope``. Raises ``TemplateError`` whose ``path`` extends ``path``
    (``"message"``, ``"items[0]"``) for a template that does not parse, a missing name, key
    or index without ``default``, anything the sandbox refuses, or a non-JSON result.
    """
    token = current_work.set([0])
    try:
        return _render(value, scope, path)
    except SecurityError as exc:  # work spent outside any one expression (text, conversion)
        raise TemplateError(path, str(exc)) from None
    finally:
        current_work.reset(token)


def _render(value: Any, scope: Mapping[str, Any], path: str) -> Any:
    if isinstance(value, str):
        return _render_string(value, scope, path) if "{{" in value else value
    if isinstance(value, Mapping):
        return {k: _render(v, scope, join_path(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, scope, join_path(path, i)) for i, v in enumerate(value)]
    return value
