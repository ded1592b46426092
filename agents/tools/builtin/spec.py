"""What a built-in tool is (``BuiltinSpec``) and how risks rank; each built-in's module has one."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from agents.choices import Risk
from agents.tools.base import ToolContext


@dataclasses.dataclass(frozen=True)
class BuiltinSpec:
    """A built-in tool: its name, what it does, its schemas, minimum risk and function.

    ``risk`` is the worst the function can do with arguments a model chooses, so it is a
    floor: a tool registered on this built-in may raise it, never lower it (``risk_why``
    says why, in the error an administrator sees when they try).
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    risk: str
    fn: Callable[[dict[str, Any], ToolContext], dict[str, Any]]
    risk_why: str = ""


RISK_ORDER = (Risk.READ, Risk.WRITE, Risk.DESTRUCTIVE)


def risk_rank(risk: str) -> int:
    """read < write < destructive; an unknown value ranks as destructive (fails closed)."""
    return RISK_ORDER.index(risk) if risk in RISK_ORDER else len(RISK_ORDER) - 1
