"""The locked-down Jinja environment expressions run in: key and index lookups only, no calls,
bounded arithmetic, and every value built or compared checked and charged. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame, operators
from jinja2.exceptions import SecurityError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from runs.engine.templating.filters import FILTERS, TESTS
from runs.engine.templating.limits import MAX_INT_BITS, built, charge, is_int, size_of, within


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
        return built(value, what)

    @staticmethod
    def compared(value: Any) -> Any:
        # comparing or searching costs up to the operand's size
        charge(len(value) if isinstance(value, str) else size_of(value))
        return value

    @staticmethod
    def concat(values: tuple[Any, ...]) -> str:
        sizes = (len(v) if isinstance(v, str) else size_of(v) for v in values)
        within(sum(sizes), "the result of ~")
        return built("".join(map(str, values)), "the result of ~")

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
            if is_int(key):
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
                is_int(left)
                and is_int(right)
                and abs(left) > 1
                and left.bit_length() * right > MAX_INT_BITS
            ):
                raise SecurityError("the result of ** would be too large")
            return left**right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and is_int(times) and times > 0:
                    size = len(seq) if isinstance(seq, str) else size_of(seq)
                    within(size * times, "the result of *")
            integers = is_int(left) and is_int(right)
            if integers and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise SecurityError("the result of * would be too large")
            return left * right
        if operator == "+":
            if isinstance(left, str) and isinstance(right, str):
                within(len(left) + len(right), "the result of +")
            elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
                within(size_of(left) + size_of(right), "the result of +")
            return left + right
        return super().call_binop(context, operator, left, right)


ENV = _Environment(undefined=_Missing, autoescape=False)
ENV.globals.clear()
ENV.filters = dict(FILTERS)
ENV.tests = dict(TESTS)
