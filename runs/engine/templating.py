"""Templated JSON: ``{{ expression }}`` inside strings, evaluated safely over a scope. Pure.

``render(value, scope)`` walks JSON (objects, lists, strings; object keys are left as
written). In a string each ``{{ expression }}`` is evaluated over ``scope``, whose names
are ``input`` (the run input), ``steps`` (``steps.<id>.output``), ``context`` and the
step-local names (``item``, ``index``, ``previous``, ``iteration``). A string that is
exactly one ``{{ ... }}`` (nothing around it, not even spaces) gives the value with its JSON
type; any other string gives text, with non-string values JSON-encoded (``true``, ``null``,
``[1, 2]``). Write ``{{ '{{' }}`` for literal braces.

Expressions are Jinja2 expressions (no ``{% %}`` blocks) run in a locked-down sandbox:

* attribute and index access look up object keys and list indexes only, never Python
  attributes (``input.items`` is the key ``items``; ``input.__class__`` is refused);
  ``input["odd-key"]`` and ``input.items[0]`` / ``input.items[-1]`` work;
* no calls at all (``x.upper()``, ``range(9)``): transformations are the filters in
  ``FILTERS`` (``tojson``, ``default``, ``length``, ``join``, ``lower``, ``upper``, ``first``,
  ``last``, ``trim``, ``string``, ``int``, ``float``, ``round``, ``abs``) and the tests in
  ``TESTS`` (``x is defined`` ...);
* ``**``, ``*`` and ``%`` refuse results that would be huge and ``%``-formatting of text;
* every string, list or object an expression builds (``*``, ``+``, ``~``, list and object
  literals, slices, ``join``, ``string``, ``tojson``, ``lower``, ``upper``, ``trim``, and the
  text of a template with several parts) is at most ``MAX_SEQUENCE_LENGTH`` long, counted
  as its expanded size (characters of text plus one per element, key and number, each
  shared part counted every time it appears), and one ``render`` builds, compares and
  converts at most ``MAX_RENDER_WORK`` of that in all; values passed through unchanged
  from the scope are not limited;
* rendering a value never evaluates the value: text from the run input is data, so a user
  who types ``{{ ... }}`` into an input field only ever gets those characters back.

A name, key or index that does not exist raises ``TemplateError(path, message)`` naming the
expression, unless a ``default`` filter (``{{ input.tone | default("friendly") }}``) or an
``is defined`` test handles it. Each template string and each expression is parsed and
compiled once (LRU caches), so rendering the same definition again costs only evaluation.

``references(value)`` gives the name chains a value's templates use, read from the parsed
syntax tree (``{{ steps.triage.output.route }}`` -> ``("steps", "triage", "output",
"route")``), for validation without running anything.
"""

from __future__ import annotations

import contextvars
import json
import math
import re
from collections.abc import Iterator, Mapping, Sized
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, nodes, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame, operators
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.filters import FILTERS as _JINJA_FILTERS
from jinja2.parser import Parser
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.tests import TESTS as _JINJA_TESTS
from jinja2.utils import missing

MAX_SEQUENCE_LENGTH = 1_000_000  # largest string, list or object an expression may build
MAX_RENDER_WORK = 10_000_000  # what one render may build, compare and convert in all
MAX_INT_BITS = 1024  # largest integer that * and ** may build

# Work done by the current ``render`` call; None outside one (compile-time constant folding).
_work: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "template_work", default=None
)

_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class TemplateError(Exception):
    """A template that cannot be parsed or evaluated; ``path`` says where the string is."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class _Problem(Exception):
    """A template problem not yet tied to a path (parse results are cached path-free)."""


def join_path(base: str, key: str | int) -> str:
    """``join_path("steps[0]", "input")`` -> ``"steps[0].input"``; ints give ``[n]``.

    Keys that are not plain words are quoted: ``join_path("input", "a b")`` ->
    ``'input["a b"]'``. An empty ``base`` is the root (``join_path("", "steps")`` ->
    ``"steps"``).
    """
    if isinstance(key, int):
        return f"{base}[{key}]"
    if _SIMPLE_KEY.match(key):
        return f"{base}.{key}" if base else key
    return f"{base}[{json.dumps(key, ensure_ascii=False)}]"


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = list(obj)
        shown = ", ".join(str(k) for k in keys[:10]) + (", ..." if len(keys) > 10 else "")
        return f"the object (keys: {shown})" if keys else "the empty object"
    if isinstance(obj, list | tuple):
        return f"the list of {len(obj)} item(s)"
    if obj is None:
        return "null"
    kind = {bool: "boolean", int: "number", float: "number", str: "string"}.get(type(obj))
    text = json.dumps(obj, ensure_ascii=False, default=str)
    return f"the {kind or type(obj).__name__} {text[:40]}"


class _Missing(ChainableUndefined, StrictUndefined):
    """Undefined that chains (``a.b.c`` with ``a`` missing stays missing, so ``default`` can
    catch it) but fails on any other use (printing, comparing, iterating, measuring)."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name = self._undefined_name
        if self._undefined_obj is missing:
            return f"{name!r} is not defined"
        if isinstance(name, int):
            return f"index {name} is out of range for {_describe(self._undefined_obj)}"
        return f"{_describe(self._undefined_obj)} has no key {name!r}"


def size_of(value: Any, limit: int = MAX_SEQUENCE_LENGTH) -> int:
    """The expanded size of ``value``, counted only until it passes ``limit``.

    Characters of text, plus one per list element, object key and other value, every shared
    part counted each time it appears (``[x] * 3`` counts ``x`` three times), so it measures
    what printing or converting the value costs. Stops early: cost at most ``limit`` steps.
    """
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            total += 1 + 2 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 1 + len(item)
            if total <= limit:
                stack.extend(item)
        elif _is_int(item):
            total += 1 + item.bit_length() // 3
        else:
            total += 1
        if total > limit:
            return total
    return total


def _charge(amount: int) -> None:
    work = _work.get()
    if work is None:
        return
    work[0] += amount
    if work[0] > MAX_RENDER_WORK:
        raise SecurityError(
            f"the template does too much work: one render may build, compare and convert "
            f"at most {MAX_RENDER_WORK:,} characters and elements (MAX_RENDER_WORK)"
        )


def _within(size: int, what: str) -> None:
    if size > MAX_SEQUENCE_LENGTH:
        raise SecurityError(
            f"{what} would be too long: more than {MAX_SEQUENCE_LENGTH:,} characters and "
            "elements (MAX_SEQUENCE_LENGTH)"
        )
    _charge(size)


def _built(value: Any, what: str) -> Any:
    """``value`` (just built by ``what``) if it is within the size limit; charged to the render."""
    _within(len(value) if isinstance(value, str) else size_of(value), what)
    return value


def _tojson(value: Any, indent: int | None = None) -> str:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    _within(size_of(value), "the result of tojson")
    text = json.dumps(_jsonable(value), ensure_ascii=False, indent=indent)
    return _built(text, "the result of tojson")


@pass_eval_context
def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    if isinstance(value, Sized) and isinstance(d, str):
        _within(size_of(value) + len(d) * max(0, len(value) - 1), "the result of join")
    return _built(_JINJA_FILTERS["join"](eval_ctx, value, d, attribute), "the result of join")


def _text_filter(name: str) -> Any:
    # these turn any value into text (str() of a list is as long as the list printed)
    original = _JINJA_FILTERS[name]

    def bounded(value: Any, *args: Any) -> str:
        _within(size_of(value), f"the result of {name}")
        return _built(original(value, *args), f"the result of {name}")

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


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _CodeGenerator(CodeGenerator):
    """Sends every operation that builds or compares a value through the environment, where
    its size is checked and charged (Jinja compiles literals, ``~``, slices and comparisons
    to plain Python otherwise)."""

    def _bounded(self, visit: Any, node: nodes.Node, frame: Frame, what: str) -> None:
        self.write("environment.built(")
        visit(node, frame)
        self.write(f", {what!r})")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._bounded(super().visit_List, node, frame, "the list")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._bounded(super().visit_Dict, node, frame, "the object")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":
            super().visit_Tuple(node, frame)
        else:
            self._bounded(super().visit_Tuple, node, frame, "the list")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if isinstance(node.arg, nodes.Slice):
            self._bounded(super().visit_Getitem, node, frame, "the slice")
        else:
            super().visit_Getitem(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        self.write("(environment.compared(")
        self.visit(node.expr, frame)
        self.write(")")
        for op in node.ops:
            self.visit(op, frame)
        self.write(")")

    def visit_Operand(self, node: nodes.Operand, frame: Frame) -> None:
        self.write(f" {operators[node.op]} environment.compared(")
        self.visit(node.expr, frame)
        self.write(")")


class _Environment(ImmutableSandboxedEnvironment):
    """Key and index lookups only, no calls, bounded arithmetic, bounded values."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    @staticmethod
    def built(value: Any, what: str) -> Any:
        return _built(value, what)

    @staticmethod
    def compared(value: Any) -> Any:
        # comparing or searching costs up to the operand's size
        _charge(len(value) if isinstance(value, str) else size_of(value))
        return value

    @staticmethod
    def concat(values: tuple[Any, ...]) -> str:
        sizes = (len(v) if isinstance(v, str) else size_of(v) for v in values)
        _within(sum(sizes), "the result of ~")
        return _built("".join(map(str, values)), "the result of ~")

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute.startswith("_"):
            raise SecurityError(f"access to {attribute!r} is not allowed")
        return self._lookup(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        return self._lookup(obj, argument)

    def _lookup(self, obj: Any, key: Any) -> Any:
        if isinstance(obj, Undefined):
            return obj
        if isinstance(obj, Mapping):
            if isinstance(key, str) and key in obj:
                return obj[key]
            return self.undefined(obj=obj, name=key)
        if isinstance(obj, list | tuple | str):
            if _is_int(key):
                if -len(obj) <= key < len(obj):
                    return obj[key]
                return self.undefined(obj=obj, name=key)
            if isinstance(key, slice):
                return obj[key]
        return self.undefined(obj=obj, name=key)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        raise SecurityError("calls are not allowed: use filters, e.g. {{ x | upper }}")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            if isinstance(left, str):
                raise SecurityError("'%' formatting of text is not allowed: join text with ~")
            return left % right
        if operator == "**":
            if (
                _is_int(left)
                and _is_int(right)
                and abs(left) > 1
                and left.bit_length() * right > MAX_INT_BITS
            ):
                raise SecurityError("the result of ** would be too large")
            return left**right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and _is_int(times) and times > 0:
                    size = len(seq) if isinstance(seq, str) else size_of(seq)
                    _within(size * times, "the result of *")
            integers = _is_int(left) and _is_int(right)
            if integers and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise SecurityError("the result of * would be too large")
            return left * right
        if operator == "+":
            if isinstance(left, str) and isinstance(right, str):
                _within(len(left) + len(right), "the result of +")
            elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
                _within(size_of(left) + size_of(right), "the result of +")
            return left + right
        return super().call_binop(context, operator, left, right)


_ENV = _Environment(undefined=_Missing, autoescape=False)
_ENV.globals.clear()
_ENV.filters = dict(FILTERS)
_ENV.tests = dict(TESTS)


# --- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Expr:
    source: str


@dataclass(frozen=True)
class _Parsed:
    segments: tuple[str | _Expr, ...]

    @property
    def single(self) -> _Expr | None:
        if len(self.segments) == 1 and isinstance(self.segments[0], _Expr):
            return self.segments[0]
        return None


def _split(source: str) -> tuple[str | _Expr, ...]:
    segments: list[str | _Expr] = []
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
            raise _Problem(f"'{{{{' at character {start} is never closed with '}}}}'")
        expression = source[start + 2 : i].strip()
        if not expression:
            raise _Problem(f"empty '{{{{ }}}}' at character {start}")
        segments.append(_Expr(expression))
        pos = i + 2


_RESERVED_NAMES = frozenset({"self", "loop", "caller", "varargs", "kwargs"})  # Jinja's own


_CHECKED_NODES = (nodes.Name, nodes.Call, nodes.Getattr, nodes.Filter, nodes.Test)


def _check_node(node: nodes.Node) -> None:
    if isinstance(node, nodes.Name) and node.name in _RESERVED_NAMES:
        raise _Problem(f"{node.name!r} is reserved")
    if isinstance(node, nodes.Call):
        raise _Problem("calls are not allowed: use filters, e.g. {{ x | upper }}")
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        raise _Problem(f"access to {node.attr!r} is not allowed")
    if isinstance(node, nodes.Filter) and node.name not in FILTERS:
        raise _Problem(f"unknown filter {node.name!r}: use {', '.join(sorted(FILTERS))}")
    if isinstance(node, nodes.Test) and node.name not in TESTS:
        raise _Problem(f"unknown test {node.name!r}: use {', '.join(sorted(TESTS))}")


def _parse_node(source: str) -> nodes.Expr:
    """A fresh syntax tree for one expression, checked against the sandbox rules."""
    try:
        parser = Parser(_ENV, source, state="variable")
        node = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            raise _Problem(f"unexpected {token.value!r} after the expression")
        _check_node(node)
        for child in node.find_all(_CHECKED_NODES):
            _check_node(child)
    except TemplateSyntaxError as exc:
        raise _Problem(f"syntax error: {exc.message}") from None
    except RecursionError:
        raise _Problem("the expression is nested too deeply") from None
    return node


@lru_cache(maxsize=8192)
def _parse_template(source: str) -> _Parsed:
    parsed = _Parsed(_split(source))
    for segment in parsed.segments:
        if isinstance(segment, _Expr):
            _expression_chains(segment.source)
    return parsed


@lru_cache(maxsize=8192)
def _expression_chains(source: str) -> frozenset[tuple[str, ...]]:
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
def _compiled(source: str) -> TemplateExpression:
    node = _parse_node(source)  # a fresh tree: compiling may rewrite it
    node.set_environment(_ENV)
    body = [nodes.Assign(nodes.Name("result", "store"), node, lineno=1)]
    template = _ENV.from_string(nodes.Template(body, lineno=1))
    return TemplateExpression(template, False)


def _parse(source: str, path: str) -> _Parsed:
    try:
        return _parse_template(source)
    except _Problem as exc:
        raise TemplateError(path, f"{_quote(source)}: {exc}") from None


def _quote(source: str) -> str:
    return source if len(source) <= 120 else source[:117] + "..."


# --- evaluation ------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Problem(f"gives {value}, which is not a JSON number")
        return value
    if isinstance(value, str):
        return value if type(value) is str else str(value)
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, list | tuple):
        _charge(len(value))
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        _charge(len(value))
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Problem(f"gives an object with the key {key!r}: JSON keys are text")
            out[str(key)] = _jsonable(item)
        return out
    raise _Problem(f"gives a {type(value).__name__}, which is not JSON")


def _evaluate(expression: _Expr, scope: Mapping[str, Any], path: str) -> Any:
    label = f"{{{{ {_quote(expression.source)} }}}}"
    try:
        value = _compiled(expression.source)(scope)
        if isinstance(value, Undefined):
            raise _Problem(value._undefined_message)
        return _jsonable(value)
    except (_Problem, UndefinedError, SecurityError) as exc:
        raise TemplateError(path, f"{label}: {exc}") from None
    except Exception as exc:  # any other failure of user-written arithmetic or filters
        raise TemplateError(path, f"{label}: {type(exc).__name__}: {exc}") from None


def _render_string(source: str, scope: Mapping[str, Any], path: str) -> Any:
    parsed = _parse(source, path)
    single = parsed.single
    if single is not None:
        return _evaluate(single, scope, path)
    parts, length = [], 0
    for segment in parsed.segments:
        if isinstance(segment, str):
            parts.append(segment)
        else:
            value = _evaluate(segment, scope, path)
            if not isinstance(value, str):
                _check_text(length + size_of(value), path)
                value = json.dumps(value, ensure_ascii=False)
            parts.append(value)
        length += len(parts[-1])
        _check_text(length, path)
    _charge(length)
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
    token = _work.set([0])
    try:
        return _render(value, scope, path)
    except SecurityError as exc:  # work spent outside any one expression (text, conversion)
        raise TemplateError(path, str(exc)) from None
    finally:
        _work.reset(token)


def _render(value: Any, scope: Mapping[str, Any], path: str) -> Any:
    if isinstance(value, str):
        return _render_string(value, scope, path) if "{{" in value else value
    if isinstance(value, Mapping):
        return {k: _render(v, scope, join_path(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, scope, join_path(path, i)) for i, v in enumerate(value)]
    return value


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
        parsed = _parse(source, where)
        for segment in parsed.segments:
            if isinstance(segment, _Expr):
                chains |= _expression_chains(segment.source)
    return chains


def is_single_expression(value: Any) -> bool:
    """Whether ``value`` is a string that is exactly one ``{{ ... }}`` (so keeps its type).

    A string that does not parse is not one; ``references`` reports why.
    """
    if not isinstance(value, str) or "{{" not in value:
        return False
    try:
        return _parse_template(value).single is not None
    except _Problem:
        return False
