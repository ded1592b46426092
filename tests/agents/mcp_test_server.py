"""An MCP server for the tool tests, written with the official SDK's ``MCPServer``.

Run it over stdio (``python tests/agents/mcp_test_server.py stdio``) or streamable HTTP
(``python tests/agents/mcp_test_server.py http PORT``, endpoint ``/mcp``).

Tools: ``add`` (read-only, structured output), ``echo``, ``fail`` (always errors),
``wipe`` (destructive), ``slow`` (sleeps), ``has_env`` (reports whether an environment
variable is set, never its value) and ``whoami`` (the idempotency key it received).
``MCP_TEST_HIDE`` (comma-separated names) hides tools, to test rediscovery; over HTTP,
``MCP_TEST_API_KEY`` makes every request without that ``X-Api-Key`` header a 401.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TypedDict

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

server = MCPServer("controlplane-test", log_level="WARNING")
hidden = {name.strip() for name in os.environ.get("MCP_TEST_HIDE", "").split(",") if name.strip()}


class Sum(TypedDict):
    sum: float


class Wiped(TypedDict):
    wiped: str
    count: int


def offer(name: str, **kwargs: Any):
    """``server.tool`` unless the tool is hidden by ``MCP_TEST_HIDE``."""

    def register(fn):
        if name not in hidden:
            server.tool(name=name, **kwargs)(fn)
        return fn

    return register


@offer(
    "add",
    description="Add two numbers.",
    annotations=ToolAnnotations(title="Add numbers", read_only_hint=True),
)
def add(a: float, b: float) -> Sum:
    return {"sum": a + b}


@offer("echo", description="Echo the text back.")
def echo(text: str) -> str:
    return text


@offer("fail", description="Always fails with the given reason.")
def fail(reason: str = "the test tool failed on purpose") -> str:
    raise ToolError(reason)


@offer(
    "wipe",
    description="Pretends to delete everything under a target.",
    annotations=ToolAnnotations(destructive_hint=True),
)
def wipe(target: str) -> Wiped:
    return {"wiped": target, "count": 3}


@offer("slow", description="Sleeps for the given seconds.")
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


@offer("has_env", description="Whether an environment variable is set (never its value).")
def has_env(name: str) -> dict[str, bool]:
    return {"set": bool(os.environ.get(name))}


@offer(
    "whoami", description="The idempotency key this call carried, if any.", structured_output=False
)
def whoami(ctx: Context) -> str:
    meta = ctx.request_context.meta or {}
    return str(meta.get("dev.controlplane/idempotency-key", ""))


def http_app(api_key: str | None):
    app = server.streamable_http_app()
    if not api_key:
        return app

    async def guarded(scope, receive, send):
        # Lifespan events pass through: the session manager runs in the app's lifespan.
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"x-api-key", b"").decode() != api_key:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"text/plain")],
                    }
                )
                await send({"type": "http.response.body", "body": b"missing or wrong X-Api-Key"})
                return
        await app(scope, receive, send)

    return guarded


def main(argv: list[str]) -> None:
    if len(argv) >= 1 and argv[0] == "stdio":
        server.run("stdio")
        return
    if len(argv) == 2 and argv[0] == "http":
        import uvicorn

        app = http_app(os.environ.get("MCP_TEST_API_KEY"))
        uvicorn.run(app, host="127.0.0.1", port=int(argv[1]), log_level="warning")
        return
    sys.exit("usage: mcp_test_server.py stdio | http PORT")


if __name__ == "__main__":
    main(sys.argv[1:])
