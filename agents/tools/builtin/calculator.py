"""The calculator built-in: arithmetic on a parsed expression, refusing anything else."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from agents.choices import Risk
from agents.tools.base import ToolContext, ToolError
from agents.tools.builtin.spec import BuiltinSpec

MAX_EXPRESSION_NODES = 200
MAX_RESULT_DIGITS = 1000
MAX_EXPONENT = 10_000

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_REFUSED = {
    ast.Name: "names such as {name!r}",
    ast.Call: "function calls",
    ast.Attribute: "attributes",
    ast.Subscript: "indexing",
    ast.Compare: "comparisons",
    ast.BoolOp: "and/or",
    ast.Lambda: "lambdas",
}


def _calc_error(message: str) -> ToolError:
    return ToolError(
        message,
        code="invalid_arguments",
        details={"errors": [{"path": "$.expression", "message": message}]},
    )


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_DIGITS * 3.33:
        raise _calc_error(f"The result has more than {MAX_RESULT_DIGITS} digits.")
    if isinstance(value, float) and not math.isfinite(value):
        raise _calc_error("The result is too large to represent.")
    if isinstance(value, complex):
        raise _calc_error("The result is not a real number.")
    return value


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _calc_error(f"Only numbers are allowed, not {node.value!r}.")
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise _calc_error(f"Exponents are limited to {MAX_EXPONENT}.")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left) > 1
                and right * math.log10(abs(left)) > MAX_RESULT_DIGITS
            ):
                raise _calc_error(f"The result would have more than {MAX_RESULT_DIGITS} digits.")
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise _calc_error("Division by zero.") from None
        except OverflowError:
            raise _calc_error("The result is too large to represent.") from None
    for kind, what in _REFUSED.items():
        if isinstance(node, kind):
            name = getattr(node, "id", "")
            raise _calc_error(
                f"Only numbers, + - * / // % ** and parentheses are allowed; "
                f"{what.format(name=name)} are not."
            )
    raise _calc_error(
        f"Only numbers, + - * / // % ** and parentheses are allowed; found {type(node).__name__}."
    )


def calculate(expression: str) -> int | float:
    """Evaluate arithmetic safely: numbers, + - * / // % **, parentheses; nothing else."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise _calc_error(f"The expression is not valid arithmetic: {exc.msg}.") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_EXPRESSION_NODES:
        raise _calc_error(f"The expression is too long (more than {MAX_EXPRESSION_NODES} parts).")
    return _evaluate(tree)


def calculator(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """``{"result": number}`` for an arithmetic expression."""
    return {"result": calculate(arguments["expression"])}


CALCULATOR_INPUT = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1000,
            "examples": ["(2 + 3) * 4 ** 2 / 7"],
        }
    },
    "required": ["expression"],
    "additionalProperties": False,
}
CALCULATOR_OUTPUT = {
    "type": "object",
    "properties": {"result": {"type": "number"}},
    "required": ["result"],
}


SPEC = BuiltinSpec(
    name="calculator",
    description="Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses.",
    input_schema=CALCULATOR_INPUT,
    output_schema=CALCULATOR_OUTPUT,
    risk=Risk.READ,
    fn=calculator,
)
