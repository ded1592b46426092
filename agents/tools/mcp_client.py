"""Talking to MCP servers through the official ``mcp`` client, from synchronous code.

Every call opens a fresh connection (streamable HTTP to ``server.url`` with the server's
secret headers, or a stdio subprocess from ``server.command`` with its secret environment),
does one thing and closes it: workers hold no long-lived sessions that could go stale.
Failures of any kind come out as ``ToolError`` in plain words; secret header and
environment values never appear in them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import shlex
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, TYPE_CHECKING, Any, TypeVar

import anyio
import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CONNECTION_CLOSED
from pydantic import ValidationError

from agents.choices import McpTransport
from agents.services.mcp_servers import stdio_command_problem
from agents.tools.base import ToolError, egress_error, no_answer
from controlplane import aio, egress

if TYPE_CHECKING:
    from agents.models import McpServer

logger = logging.getLogger("agents.tools.mcp")

T = TypeVar("T")
MAX_LIST_PAGES = 50
IDEMPOTENCY_META_KEY = "dev.controlplane/idempotency-key"
STDERR_EXCERPT = 400
REDACTED = "[redacted]"


@dataclasses.dataclass(frozen=True)
class DiscoveredTool:
    """One tool as an MCP server lists it; ``annotations`` uses the wire names (readOnlyHint...)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    title: str = ""
    annotations: dict[str, Any] = dataclasses.field(default_factory=dict)


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` to completion from sync code, also when this thread already runs a loop.

    From sync code it runs on the process's I/O loop (``controlplane.aio``): cancelling the
    step closes the session at once.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return aio.run(fn)
    # An event loop here (an async caller) cannot be re-entered: use a thread of our own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, fn).result()


def _where(server: McpServer) -> str:
    if server.transport == McpTransport.STDIO:
        return f"the MCP server command {server.command!r}"
    return f"the MCP server at {server.url}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in exc.exceptions:
            found.extend(_leaves(inner))
        return found
    return [exc]


def _scrub(text: str, server: McpServer) -> str:
    for value in [*(server.secret_headers or {}).values(), *(server.secret_env or {}).values()]:
        if isinstance(value, str) and len(value) >= 4:
            text = text.replace(value, REDACTED)
    return text


@dataclasses.dataclass
class _Attempt:
    """What one connection saw besides exceptions: the server's stderr, its last HTTP error."""

    errlog: IO[str]
    http_status: int | None = None

    def stderr_tail(self) -> str:
        try:
            self.errlog.flush()
            self.errlog.seek(0)
            text = self.errlog.read().strip()
        except (OSError, ValueError):
            return ""
        lines = [line for line in text.splitlines() if line.strip()]
        return "\n".join(lines)[-STDERR_EXCERPT:]


def _translate(
    exc: BaseException, server: McpServer, timeout: float, attempt: _Attempt
) -> ToolError:
    """The one ``ToolError`` that explains ``exc`` (possibly an exception group)."""
    leaves = _leaves(exc)
    where = _where(server)
    for leaf in leaves:
        if isinstance(leaf, ToolError):
            return leaf
    refused = egress.refused_in(exc)
    if refused is not None:
        return egress_error(refused)
    for leaf in leaves:
        if isinstance(leaf, TimeoutError):
            return ToolError(
                _sentence(f"{where} did not answer within {timeout:g} seconds."),
                code="timeout",
                retryable=True,
            )
    for leaf in leaves:
        if isinstance(leaf, FileNotFoundError | PermissionError):
            return ToolError(
                f"Could not start {where}: {leaf.strerror or leaf}. "
                "Check the command and its path.",
                code="upstream_error",
            )
    for leaf in leaves:
        if isinstance(leaf, httpx2.HTTPError | ConnectionError):
            # One wording for refused, reset and non-HTTP: errors must not map a network.
            return no_answer(where)
    # The SDK reports HTTP errors as a generic MCP error; the status says more.
    status = attempt.http_status
    if status in (401, 403):
        return ToolError(
            _sentence(
                f"{where} refused the credentials (HTTP {status}). "
                "Check the server's secret headers."
            ),
            code="upstream_error",
            details={"status": status},
        )
    if status is not None and status != 404:
        return ToolError(
            _sentence(f"{where} answered HTTP {status}."),
            code="upstream_error",
            retryable=status >= 500 or status == 429,
            details={"status": status},
        )
    tail = _scrub(attempt.stderr_tail(), server)
    wrote = f" The server wrote: {tail}" if tail else ""
    for leaf in leaves:
        if isinstance(leaf, MCPError) and leaf.error.code == CONNECTION_CLOSED:
            return ToolError(
                _sentence(f"{where} closed the connection before answering.{wrote}"),
                code="upstream_error",
                retryable=server.transport != McpTransport.STDIO,
            )
        if isinstance(leaf, MCPError):
            return ToolError(
                _sentence(
                    _scrub(
                        f"{where} refused the request: {leaf.error.message} "
                        f"(code {leaf.error.code}).{wrote}",
                        server,
                    )
                ),
                code="upstream_error",
                details={"mcp_code": leaf.error.code},
            )
        if isinstance(leaf, ValidationError):
            return ToolError(
                _sentence(f"{where} sent a malformed answer."),
                code="upstream_error",
            )
    first = leaves[0] if leaves else exc
    said = f": {first}" if server.transport == McpTransport.STDIO else ""
    message = f"Could not talk to {where}: {type(first).__name__}{said}.{wrote}"
    return ToolError(_scrub(message, server), code="upstream_error", retryable=True)


async def _with_client(
    server: McpServer,
    timeout: float,
    attempt: _Attempt,
    work: Callable[[Client], Awaitable[T]],
) -> T:
    with anyio.fail_after(timeout):
        if server.transport == McpTransport.STDIO:
            argv = shlex.split(server.command) + [str(a) for a in server.args or []]
            if not argv:
                raise ToolError("The MCP server has no command.", code="not_found")
            problem = stdio_command_problem(server.command)
            if problem:  # the list may have changed since the server was registered
                raise ToolError(problem, code="forbidden")
            params = StdioServerParameters(
                command=argv[0], args=argv[1:], env=dict(server.secret_env or {}) or None
            )
            transport = stdio_client(params, errlog=attempt.errlog)
            async with Client(transport, cache=None, read_timeout_seconds=timeout) as client:
                return await work(client)
        if not server.url:
            raise ToolError("The MCP server has no URL.", code="not_found")

        async def note_status(response: httpx2.Response) -> None:
            # POSTs carry the requests; a GET or DELETE may fairly be answered 405.
            if response.request.method == "POST" and response.status_code >= 400:
                attempt.http_status = response.status_code

        # What ``mcp``'s create_mcp_http_client builds (no redirects: the transport follows
        # same-origin ones itself), with every connection through the egress guard.
        http_client = httpx2.AsyncClient(
            headers=dict(server.secret_headers or {}),
            timeout=httpx2.Timeout(timeout),
            transport=egress.httpx2_async_transport(),
        )
        http_client.event_hooks["response"].append(note_status)
        transport = streamable_http_client(server.url, http_client=http_client)
        async with (
            http_client,
            Client(transport, cache=None, read_timeout_seconds=timeout) as client,
        ):
            return await work(client)


def _execute(server: McpServer, timeout: float, work: Callable[[Client], Awaitable[T]]) -> T:
    # The stdio server's stderr is kept to explain a failure to start, then thrown away.
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as errlog:
        attempt = _Attempt(errlog=errlog)
        try:
            return _run(lambda: _with_client(server, timeout, attempt, work))
        except aio.Cancelled:  # the step was cancelled: the session is closed, nothing failed
            raise
        except Exception as exc:  # ExceptionGroup included: anyio task groups wrap failures
            raise _translate(exc, server, timeout, attempt) from None


def discover(server: McpServer) -> list[DiscoveredTool]:
    """Every tool ``server`` offers, with its schemas and annotations (all pages)."""

    async def work(client: Client) -> list[DiscoveredTool]:
        found: list[DiscoveredTool] = []
        cursor: str | None = None
        for _page in range(MAX_LIST_PAGES):
            listing = await client.list_tools(cursor=cursor)
            for tool in listing.tools:
                annotations = (
                    tool.annotations.model_dump(by_alias=True, exclude_none=True)
                    if tool.annotations is not None
                    else {}
                )
                found.append(
                    DiscoveredTool(
                        name=tool.name,
                        description=tool.description or "",
                        input_schema=dict(tool.input_schema or {}),
                        output_schema=dict(tool.output_schema) if tool.output_schema else None,
                        title=tool.title or annotations.get("title") or "",
                        annotations=annotations,
                    )
                )
            cursor = listing.next_cursor
            if not cursor:
                break
        return found

    tools = _execute(server, float(server.timeout_seconds or 30), work)
    logger.info("discovered %d tools on %s", len(tools), server.slug)
    return tools


def _result_object(result: Any, tool_name: str, server: McpServer) -> dict[str, Any]:
    if result.is_error:
        text = " ".join(
            block.text for block in result.content if getattr(block, "type", "") == "text"
        ).strip()
        raise ToolError(
            _scrub(f"The MCP tool {tool_name!r} reported an error: {text or 'no details'}", server),
            code="upstream_error",
        )
    if result.structured_content is not None:
        value = result.structured_content
        return value if isinstance(value, dict) else {"result": value}
    texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
    if texts:
        joined = "\n".join(texts)
        try:
            value = json.loads(joined)
        except ValueError:
            value = joined
        return value if isinstance(value, dict) else {"result": value}
    return {
        "content": [block.model_dump(by_alias=True, exclude_none=True) for block in result.content]
    }


def call(
    server: McpServer,
    tool_name: str,
    arguments: dict[str, Any],
    timeout: float,
    *,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Call ``tool_name`` on ``server``; its structured content, else its text (JSON if it parses).

    The idempotency key, when given, travels in the request's ``_meta`` under
    ``dev.controlplane/idempotency-key`` for servers that honour it.
    """

    async def work(client: Client) -> Any:
        meta: Any = {IDEMPOTENCY_META_KEY: idempotency_key} if idempotency_key else None
        try:
            return await client.call_tool(tool_name, arguments, meta=meta)
        except RuntimeError as exc:
            # The SDK checks structured content against the tool's output schema itself.
            raise ToolError(
                f"The MCP tool {tool_name!r} returned output that does not match its schema: {exc}",
                code="invalid_output",
            ) from None

    result = _execute(server, timeout, work)
    return _result_object(result, tool_name, server)
