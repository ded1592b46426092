"""The http_request built-in: GET or POST to one of the tool's allowed hosts."""

from __future__ import annotations

from typing import Any

from agents.choices import Risk
from agents.tools.base import ToolContext
from agents.tools.builtin.spec import BuiltinSpec
from agents.tools.http_tool import build_headers, raise_for_status, scrub, send_http

_DROPPED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def http_request(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """GET or POST a URL on one of the tool's allowed hosts; the status and the body."""
    tool = ctx.tool
    method = arguments.get("method", "GET")
    headers: dict[str, str] = {
        k: v
        for k, v in (arguments.get("headers") or {}).items()
        if k.lower() not in _DROPPED_HEADERS
    }
    secrets: list[str] = []
    secret_names: set[str] = set()
    if tool is not None:
        configured, secret_names, secrets = build_headers(tool, ctx)
        # Configured headers win: an agent cannot replace the tool's credentials.
        headers = {k: v for k, v in headers.items() if k.lower() not in secret_names}
        headers.update(configured)
    elif ctx.idempotency_key:
        headers["Idempotency-Key"] = ctx.idempotency_key
    query = arguments.get("query") or {}
    response = send_http(
        method=method,
        url=arguments["url"],
        allowed_hosts=list(tool.allowed_hosts or []) if tool is not None else [],
        headers=headers,
        secret_header_names=secret_names,
        timeout_seconds=float(tool.timeout_seconds if tool is not None else 30),
        deadline=ctx.deadline,
        json_body=arguments.get("body"),
        send_body=method == "POST" and "body" in arguments,
        params=[(k, _query_text(v)) for k, v in query.items()] or None,
    )
    raise_for_status(response, secrets)
    out: dict[str, Any] = {
        "status": response.status,
        "url": response.url,
        "content_type": response.content_type,
    }
    is_json, value = response.parsed_json()
    if is_json:
        out["json"] = scrub(value, secrets)
    else:
        out["text"] = scrub(response.text, secrets)
    return out


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


HTTP_REQUEST_INPUT = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": 2000},
        "method": {"enum": ["GET", "POST"], "default": "GET"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "query": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "body": {"description": "JSON body of a POST."},
    },
    "required": ["url"],
    "additionalProperties": False,
}
HTTP_REQUEST_OUTPUT = {
    "type": "object",
    "properties": {
        "status": {"type": "integer"},
        "url": {"type": "string"},
        "content_type": {"type": "string"},
        "json": {},
        "text": {"type": "string"},
    },
    "required": ["status", "url"],
}


SPEC = BuiltinSpec(
    name="http_request",
    description="Send a GET or POST request to one of the tool's allowed hosts and "
    "return the status and body (parsed when JSON).",
    input_schema=HTTP_REQUEST_INPUT,
    output_schema=HTTP_REQUEST_OUTPUT,
    risk=Risk.WRITE,
    fn=http_request,
    risk_why="it can send POST requests to its allowed hosts",
)
