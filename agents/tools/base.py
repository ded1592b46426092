"""One entry point for every tool call: validate arguments, dispatch by kind, validate the result.

``execute_tool`` is what the run engine, the API's "try it" endpoint and tests call. It
guarantees that a kind's executor only ever sees arguments that match the tool's input
schema, that the caller only ever sees a JSON object that matches its output schema, and
that every failure is a ``ToolError`` with a message a person can act on. It stays one
module past 400 lines because it is one pipeline (context, schema checks, host checks,
dispatch, result check) whose steps are only used together.
"""

from __future__ import annotations

import dataclasses
import functools
import http
import json
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable

from agents.choices import ToolKind
from controlplane import context, egress, hooks
from controlplane.choices import Status
from controlplane.errors import CodedError

if TYPE_CHECKING:
    from agents.models import Tool
    from controlplane.tenancy.models import Tenant

logger = logging.getLogger("agents.tools")

MAX_ERRORS_REPORTED = 20


class ToolError(CodedError):
    """A tool call that did not produce a result, told in words meant for a person or a model.

    ``code`` is stable and machine-readable (``invalid_arguments``, ``invalid_output``,
    ``invalid_schema``, ``host_not_allowed``, ``egress_refused``, ``timeout``,
    ``upstream_error``, ``not_found``, ``disabled``, ``internal_error``); ``retryable`` says
    whether the same call may succeed later; ``details`` carries structured extras
    (``errors`` with paths, an HTTP ``status``).
    """

    default_code = "upstream_error"


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


# JSON Schema -------------------------------------------------------------------------------


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


def _raise_if_invalid(
    errors: list[dict[str, str]], *, what: str, code: str, tool_slug: str
) -> None:
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


# Network errors ----------------------------------------------------------------------------


def status_line(status: int) -> str:
    """``HTTP 500 Internal Server Error``: the status in standard words, never the server's."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP {status} {phrase}".rstrip()


def egress_error(exc: egress.EgressRefused) -> ToolError:
    """The tool error for a call the egress guard refused (final: retrying cannot help)."""
    return ToolError(exc.message, code="egress_refused", details={"host": exc.host})


def no_answer(
    where: str, *, code: str = "upstream_error", within: float | None = None
) -> ToolError:
    """One wording for every way a connection can fail to give an HTTP answer.

    A refused port, a reset, a server speaking another protocol and a timeout read alike,
    so errors cannot be used to map which ports of a network answer and with what.
    """
    limit = f" within {within:g} seconds" if within is not None else ""
    return ToolError(
        f"No HTTP answer from {where}{limit}: the connection failed, was closed or timed out.",
        code=code,
        retryable=True,
    )


# Hosts -------------------------------------------------------------------------------------


def _normalise_host(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


def _parse_pattern(pattern: str) -> tuple[bool, str, int | None]:
    """(wildcard, host, port) of an allowed-host pattern; ValueError when it is not one."""
    pattern = pattern.strip().lower()
    wildcard = pattern.startswith("*.")
    if wildcard:
        pattern = pattern[2:]
    if any(ch in pattern for ch in "/?#@\\*") or any(ch.isspace() for ch in pattern):
        raise ValueError("give a host name, optionally with :port, or *.domain")
    parsed = urlsplit(f"//{pattern}")  # ValueError for "[x" and other broken brackets
    host, port = _normalise_host(parsed.hostname or ""), parsed.port
    if not host:
        raise ValueError("it names no host")
    return wildcard, host, port


def host_pattern_problems(patterns: Any) -> list[str]:
    """Why each allowed-host pattern is unusable (empty when all are fine), for a 400."""
    if not isinstance(patterns, list):
        return ['Give a list of host names, e.g. ["api.example.com"].']
    problems = []
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern.strip():
            problems.append(f"Item {index}: give a host name such as api.example.com.")
            continue
        try:
            _parse_pattern(pattern)
        except ValueError as exc:
            problems.append(
                f"Item {index} ({pattern!r}) is not a host pattern: {exc}. Write "
                "api.example.com, api.example.com:8443, *.example.com or [2001:db8::1]."
            )
    return problems


def _pattern_matches(pattern: str, host: str, port: int) -> bool:
    try:
        wildcard, pattern_host, pattern_port = _parse_pattern(pattern)
    except ValueError:
        return False
    if pattern_port is not None and pattern_port != port:
        return False
    if wildcard:
        # "*.example.com" means subdomains only, not the apex.
        return host.endswith("." + pattern_host)
    return host == pattern_host


def check_host_allowed(url: str, allowed_hosts: Iterable[str]) -> str:
    """Refuse ``url`` unless it is http(s) to a host on ``allowed_hosts``; returns the host.

    Patterns are exact host names (``api.example.com``), optionally with a port
    (``127.0.0.1:8080``), or ``*.example.com`` for any subdomain. URLs with user info
    (``https://trusted@evil.com``) are refused outright: parsers disagree about them.
    """
    allowed = [h for h in allowed_hosts if isinstance(h, str) and h.strip()]
    if any(ch in url for ch in "\\\r\n\t ") or any(ord(ch) < 32 for ch in url):
        raise ToolError(
            "The URL contains spaces, backslashes or control characters; give a plain URL.",
            code="host_not_allowed",
        )
    try:
        parsed = httpx.URL(url)
        split = urlsplit(url)
        split_host = split.hostname or ""
    except (httpx.InvalidURL, ValueError) as exc:
        raise ToolError(f"The URL {url!r} is not valid: {exc}.", code="host_not_allowed") from None
    if parsed.scheme not in ("http", "https"):
        raise ToolError(
            f"Only http and https URLs are allowed, not {parsed.scheme or 'a URL without scheme'}.",
            code="host_not_allowed",
        )
    if parsed.userinfo or "@" in split.netloc:
        raise ToolError(
            "URLs with a user name or password before the host are not allowed; "
            "put credentials in headers instead.",
            code="host_not_allowed",
        )
    host = _normalise_host(parsed.host)
    if not host:
        raise ToolError(f"The URL {url!r} has no host.", code="host_not_allowed")
    if _normalise_host(split_host) != host:
        raise ToolError(f"The URL {url!r} is ambiguous about its host.", code="host_not_allowed")
    if not allowed:
        raise ToolError(
            f"No hosts are allowed for this tool, so {host} is refused. "
            "Add it to the tool's allowed hosts.",
            code="host_not_allowed",
            details={"host": host},
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not any(_pattern_matches(pattern, host, port) for pattern in allowed):
        raise ToolError(
            f"The host {host} is not in this tool's allowed hosts ({', '.join(allowed)}).",
            code="host_not_allowed",
            details={"host": host},
        )
    return host


# Execution ---------------------------------------------------------------------------------


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
            _raise_if_invalid(
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
        _raise_if_invalid(
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
        except ToolError:
            raise
        except Exception as exc:
            logger.exception("tool %s (%s) failed unexpectedly", tool.slug, tool.kind)
            raise ToolError(
                f"Tool {tool.slug!r} failed unexpectedly ({type(exc).__name__}).",
                code="internal_error",
            ) from None
        _raise_if_invalid(
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
