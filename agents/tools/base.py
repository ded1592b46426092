"""One entry point for every tool call: validate arguments, dispatch by kind, validate the result.

``execute_tool`` is what the run engine, the API's "try it" endpoint and tests call. It
guarantees that a kind's executor only ever sees arguments that match the tool's input
schema, that the caller only ever sees a JSON object that matches its output schema, and
that every failure is a ``ToolError`` with a message a person can act on.

The pipeline's parts live beside it: ``agents.tools.errors`` (``ToolError`` and the network
wordings), ``agents.tools.schema`` (schema checks) and ``agents.tools.hosts`` (allowed
hosts). Their public names are importable from here too, where callers have always found them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from agents.choices import ToolKind
from agents.tools.errors import ToolError, egress_error, no_answer, status_line
from agents.tools.hosts import check_host_allowed, host_pattern_problems
from agents.tools.schema import (
    MAX_ERRORS_REPORTED,
    json_path,
    raise_if_invalid,
    validate_schema,
    validation_errors,
)
from controlplane import aio, context
from controlplane.choices import Status

if TYPE_CHECKING:
    from agents.models import Tool
    from controlplane.tenancy.models import Tenant

logger = logging.getLogger("agents.tools")

__all__ = [
    "MAX_ERRORS_REPORTED",
    "ToolContext",
    "ToolError",
    "check_host_allowed",
    "egress_error",
    "execute_tool",
    "host_pattern_problems",
    "json_path",
    "make_idempotency_key",
    "no_answer",
    "status_line",
    "validate_schema",
    "validation_errors",
]


@dataclasses.dataclass
class ToolContext:
    """What a tool call knows about its caller.

    ``run_context`` (the run's shared memory) and ``agent_memory`` (the agent's long-term
    memory) are shared, mutable dicts: a tool may read and write them. ``idempotency_key``
    identifies the call across retries of a step (see ``make_idempotency_key``); tools that
    can honour it do. ``tool`` and ``deadline`` are filled in by ``execute_tool`` for the
    duration of one call; callers leave them unset.
    """

    tenant: Tenant
    run_context: dict[str, Any] = dataclasses.field(default_factory=dict)
    agent_memory: dict[str, Any] = dataclasses.field(default_factory=dict)
    idempotency_key: str | None = None
    caller: str = ""
    tool: Tool | None = None
    deadline: float | None = None  # time.monotonic() value after which the call has timed out

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def check_deadline(self) -> None:
        """Raise a timeout ``ToolError`` once the call has run past its deadline."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            seconds = self.tool.timeout_seconds if self.tool is not None else None
            raise ToolError(
                f"The tool did not finish within its timeout of {seconds} seconds."
                if seconds
                else "The tool did not finish within its timeout.",
                code="timeout",
                retryable=True,
            )


def make_idempotency_key(run_id: Any, step_key: Any, call_index: int) -> str:
    """The idempotency key of a tool call: the same for every attempt of the same step."""
    return f"run-{run_id}-step-{step_key}-call-{call_index}"


def _as_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"result": value}


def _dispatch(tool: Tool, arguments: dict[str, Any], ctx: ToolContext) -> Any:
    if tool.kind == ToolKind.BUILTIN:
        from agents.tools.builtin import BUILTINS  # here: the built-ins import this module

        spec = BUILTINS.get(tool.builtin)
        if spec is None:
            raise ToolError(
                f"Tool {tool.slug!r} names the built-in {tool.builtin!r}, which does not exist.",
                code="not_found",
            )
        if spec.input_schema != tool.input_schema:
            # The function's own contract holds even when the tool narrows or loosens its schema.
            raise_if_invalid(
                validation_errors(spec.input_schema, arguments),
                what="arguments",
                code="invalid_arguments",
                tool_slug=tool.slug,
            )
        return spec.fn(arguments, ctx)
    if tool.kind == ToolKind.HTTP:
        from agents.tools.http_tool import execute_http  # here: it imports this module

        return execute_http(tool, arguments, ctx)
    if tool.kind == ToolKind.MCP:
        from agents.tools.mcp_client import call  # here: the MCP client library is heavy

        server = tool.mcp_server
        if server is None or not tool.mcp_tool_name:
            raise ToolError(f"Tool {tool.slug!r} has no MCP server.", code="not_found")
        if server.status != Status.ACTIVE:
            raise ToolError(f"The MCP server {server.slug!r} is disabled.", code="disabled")
        return call(
            server,
            tool.mcp_tool_name,
            arguments,
            timeout=float(tool.timeout_seconds),
            idempotency_key=ctx.idempotency_key,
        )
    raise ToolError(f"Tool {tool.slug!r} has an unknown kind {tool.kind!r}.", code="not_found")


def execute_tool(tool: Tool, arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Call ``tool`` with ``arguments`` for ``ctx`` and return its result as a JSON object.

    Arguments are validated against the tool's input schema before anything runs and the
    result against its output schema after; the call is bounded by ``tool.timeout_seconds``.
    Raises ``ToolError`` for every failure (never another exception). Policy checks and
    audit of the call itself are the caller's job; side effects inside tools audit themselves.
    """
    started = time.monotonic()
    outcome = "error"
    try:
        if tool.tenant_id != getattr(ctx.tenant, "pk", None):
            raise ToolError(f"Tool {tool.slug!r} does not exist in this tenant.", code="not_found")
        if tool.status != Status.ACTIVE:
            raise ToolError(
                f"Tool {tool.slug!r} is disabled; enable it before calling it.", code="disabled"
            )
        if not isinstance(arguments, dict):
            raise ToolError(
                f"Arguments for tool {tool.slug!r} must be a JSON object.",
                code="invalid_arguments",
                details={"errors": [{"path": "$", "message": "not an object"}]},
            )
        raise_if_invalid(
            validation_errors(tool.input_schema, arguments),
            what="arguments",
            code="invalid_arguments",
            tool_slug=tool.slug,
        )
        call_ctx = dataclasses.replace(
            ctx, tool=tool, deadline=started + max(1, tool.timeout_seconds or 30)
        )
        scoped = context.current_tenant()
        if scoped is not None and scoped.pk != ctx.tenant.pk:
            raise ToolError(
                "The tool call's tenant differs from the tenant in context.", code="internal_error"
            )
        try:
            with context.using(tenant=ctx.tenant):
                result = _as_object(_dispatch(tool, arguments, call_ctx))
        except (ToolError, aio.Cancelled):  # cancelled: the step stops, the tool did not fail
            raise
        except Exception as exc:
            logger.exception("tool %s (%s) failed unexpectedly", tool.slug, tool.kind)
            raise ToolError(
                f"Tool {tool.slug!r} failed unexpectedly ({type(exc).__name__}).",
                code="internal_error",
            ) from None
        raise_if_invalid(
            validation_errors(tool.output_schema, result),
            what="output",
            code="invalid_output",
            tool_slug=tool.slug,
        )
        outcome = "ok"
        return result
    except ToolError as exc:
        outcome = exc.code
        raise
    finally:
        logger.info(
            "tool %s (%s) -> %s in %.0f ms",
            tool.slug,
            tool.kind,
            outcome,
            (time.monotonic() - started) * 1000,
        )
