"""Template strings split into text and ``{{ expressions }}``, expressions parsed, checked
against the sandbox rules and compiled once (LRU caches), and the name chains they read. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import TemplateSyntaxError
from jinja2.parser import Parser

from runs.engine.templating.errors import Problem, TemplateError, join_path, quote
from runs.engine.templating.filters import FILTERS, TESTS
from runs.engine.templating.sandbox import ENV


@dataclass(frozen=True)
class Expr:
    """One ``{{ expression }}`` of a template string: its source between the braces."""

    source: str


@dataclass(frozen=True)
class Parsed:
    """A template string split into text and ``Expr`` segments, in order."""

    segments: tuple[str | Expr, ...]

    @property
    def single(self) -> Expr | None:
        if len(self.segments) == 1 and isinstance(self.segments[0], Expr):
            return self.segments[0]
        return None


def _split(source: str) -> tuple[str | Expr, ...]:
    segments: list[str | Expr] = []
    pos, end = 0, len(source)
    while True:
        start = source.find("{{", pos)
        if start < 0:
            if pos < end:
                segments.append(source[pos:])
            return tuple(segments)
        if start > pos:
            segments.append(source[pos:start])
        i, depth, quote = start + 2, 0, ""
        while i < end:
            char = source[i]
            if quote:
                if char == "\\":
                    i += 1
                elif char == quote:
                    quote = ""
            elif char in "'\"":
                quote = char
            elif char in "([{":
                depth += 1
            elif char in ")]" or (char == "}" and depth > 0):
                depth -= 1
            elif char == "}" and source.startswith("}}", i):
                break
            i += 1
        else:
            raise Problem(f"'{{{{' at character {start} is never closed with '}}}}'")
        expression = source[start + 2 : i].strip()
        if not expression:
            raise Problem(f"empty '{{{{ }}}}' at character {start}")
        segments.append(Expr(expression))
        pos = i + 2


_RESERVED_NAMES = frozenset({"self", "loop", "caller", "varargs", "kwargs"})  # Jinja's own


_CHECKED_NODES = (nodes.Name, nodes.Call, nodes.Getattr, nodes.Filter, nodes.Test)


def _check_node(node: nodes.Node) -> None:
    if isinstance(node, nodes.Name) and node.name in _RESERVED_NAMES:
        raise Problem(f"{node.name!r} is reserved")
    if isinstance(node, nodes.Call):
        raise Problem("calls are not allowed: use filters, e.g. {{ x | upper }}")
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        raise Problem(f"access to {node.attr!r} is not allowed")
    if isinstance(node, nodes.Filter) and node.name not in FILTERS:
        raise Problem(f"unknown filter {node.name!r}: use {', '.join(sorted(FILTERS))}")
    if isinstance(node, nodes.Test) and node.name not in TESTS:
        raise Problem(f"unknown test {node.name!r}: use {', '.join(sorted(TESTS))}")


def _parse_node(source: str) -> nodes.Expr:
    """A fresh syntax tree for one expression, checked against the sandbox rules."""
    try:
        parser = Parser(ENV, source, state="variable")
        node = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            raise Problem(f"unexpected {token.value!r} after the expression")
        _check_node(node)
        for child in node.find_all(_CHECKED_NODES):
            _check_node(child)
    except TemplateSyntaxError as exc:
        raise Problem(f"syntax error: {exc.message}") from None
    except RecursionError:
        raise Problem("the expression is nested too deeply") from None
    return node


@lru_cache(maxsize=8192)
def parse_template(source: str) -> Parsed:
    """A template string split and each expression checked (cached; raises ``Problem``)."""
    parsed = Parsed(_split(source))
    for segment in parsed.segments:
        if isinstance(segment, Expr):
            expression_chains(segment.source)
    return parsed


@lru_cache(maxsize=8192)
def expression_chains(source: str) -> frozenset[tuple[str, ...]]:
    """The name chains one expression reads (cached; raises ``Problem``)."""
    chains: set[tuple[str, ...]] = set()
    _collect(_parse_node(source), chains)
    return frozenset(chains)


def _collect(node: nodes.Node, out: set[tuple[str, ...]]) -> None:
    if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
        accessors: list[nodes.Getattr | nodes.Getitem] = []
        base: nodes.Node = node
        while isinstance(base, nodes.Getattr | nodes.Getitem):
            accessors.append(base)
            base = base.node
        accessors.reverse()
        if isinstance(base, nodes.Name):
            parts, static = [base.name], True
            for accessor in accessors:
                key = None
                if isinstance(accessor, nodes.Getattr):
                    key = accessor.attr
                elif isinstance(accessor.arg, nodes.Const) and isinstance(accessor.arg.value, str):
                    key = accessor.arg.value
                static = static and key is not None
                if static:
                    parts.append(key)
            out.add(tuple(parts))
        else:
            _collect(base, out)
        for accessor in accessors:
            if isinstance(accessor, nodes.Getitem):
                _collect(accessor.arg, out)
        return
    for child in node.iter_child_nodes():
        _collect(child, out)


@lru_cache(maxsize=8192)
def compiled(source: str) -> TemplateExpression:
    """One expression compiled for the sandbox (cached)."""
    node = _parse_node(source)  # a fresh tree: compiling may rewrite it
    node.set_environment(ENV)
    body = [nodes.Assign(nodes.Name("result", "store"), node, lineno=1)]
    template = ENV.from_string(nodes.Template(body, lineno=1))
    return TemplateExpression(template, False)


def parse(source: str, path: str) -> Parsed:
    """``parse_template`` with its problem raised as ``TemplateError`` at ``path``."""
    try:
        return parse_template(source)
    except Problem as exc:
        raise TemplateError(path, f"{quote(source)}: {exc}") from None


def template_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(path, string)`` in ``value`` that contains ``{{``, in document order."""
    if isinstance(value, str):
        if "{{" in value:
            yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from template_strings(item, join_path(path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from template_strings(item, join_path(path, index))


def references(value: Any, path: str = "") -> set[tuple[str, ...]]:
    """The name chains the templates in ``value`` use, without evaluating anything.

    A chain is the name followed by every key written literally after it, up to the first
    index or computed key: ``steps.triage.output.route`` -> ``("steps", "triage", "output",
    "route")``, ``input["odd-key"]`` -> ``("input", "odd-key")``, ``input.items[0].name`` ->
    ``("input", "items")``, ``steps[input.which]`` -> ``("steps",)`` and ``("input",
    "which")``. Raises ``TemplateError`` (at the string's path) for a template that does not
    parse or that the sandbox would refuse (calls, ``_`` names, unknown filters or tests).
    """
    chains: set[tuple[str, ...]] = set()
    for where, source in template_strings(value, path):
        parsed = parse(source, where)
        for segment in parsed.segments:
            if isinstance(segment, Expr):
                chains |= expression_chains(segment.source)
    return chains


def is_single_expression(value: Any) -> bool:
    """Whether ``value`` is a string that is exactly one ``{{ ... }}`` (so keeps its type).

    A string that does not parse is not one; ``references`` reports why.
    """
    if not isinstance(value, str) or "{{" not in value:
        return False
    try:
        return parse_template(value).single is not None
    except Problem:
        return False
