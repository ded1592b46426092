"""The webhook contract through which external agents (LangGraph, CrewAI, anything) join a run.

Request: ``POST <url>`` with JSON ``{"agent", "version", "tenant", "run": {"id", "step"},
"input", "context"}``, headers ``Content-Type: application/json``, ``Idempotency-Key``
(stable across retries of the same step), and the configured auth header whose value
comes from a tenant secret. Response: HTTP 2xx with a JSON object holding ``output`` (any
JSON) and optionally ``context`` (an object merged into the run's shared context). Any
other answer is a step error: 4xx is final, 5xx, 429 and timeouts may be retried.
"""

from __future__ import annotations

import dataclasses
import http
import re
import time
from typing import Any

import httpx

from agents.models import AgentVersion, Secret
from controlplane import aio, egress

# The secret's place in ``auth_format``: "{}" or "{secret}", nothing else is a placeholder.
AUTH_PLACEHOLDER = re.compile(r"\{(?:secret)?\}")
DEFAULT_AUTH_FORMAT = "Bearer {}"


class HttpAgentError(Exception):
    """An external agent broke the contract or failed; ``retryable``: trying again may help."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status


@dataclasses.dataclass(frozen=True)
class HttpAgentResult:
    output: Any
    context: dict[str, Any]
    status: int
    latency_ms: float


def call_http_agent(
    *,
    version: AgentVersion,
    input: Any,
    context: dict[str, Any],
    run_id: str,
    step: str,
    idempotency_key: str,
) -> HttpAgentResult:
    """POST the step to the agent's webhook and return its output (see module docstring)."""
    config = version.config
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key,
        "User-Agent": "agent-control-plane",
    }
    if config.get("auth_secret"):
        secret = (
            Secret.objects.for_tenant(version.tenant).filter(name=config["auth_secret"]).first()
        )
        if secret is None:
            raise HttpAgentError(
                f"Secret {config['auth_secret']!r} no longer exists.", retryable=False
            )
        header = config.get("auth_header") or "Authorization"
        headers[header] = auth_value(config.get("auth_format") or DEFAULT_AUTH_FORMAT, secret.value)
    body = {
        "agent": version.agent.slug,
        "version": version.number,
        "tenant": version.tenant.slug,
        "run": {"id": run_id, "step": step},
        "input": input,
        "context": context,
    }
    timeout = float(config.get("timeout_seconds", 30))
    started = time.perf_counter()
    try:
        response = aio.run(lambda: _post(config["url"], body, headers, timeout))
    except egress.EgressRefused as exc:
        raise HttpAgentError(exc.message, retryable=False) from None
    except httpx.HTTPError:
        # One wording for refused, reset, non-HTTP and slow: errors must not map a network.
        raise HttpAgentError(
            f"Could not reach the agent at {_where(config['url'])}: no HTTP answer within "
            f"{timeout:g} s (the connection failed, was closed or timed out).",
            retryable=True,
        ) from None
    latency = (time.perf_counter() - started) * 1000
    if response.status_code >= 300:
        retryable = response.status_code >= 500 or response.status_code == 429
        # The status in standard words only: the body is not repeated to whoever reads the run.
        raise HttpAgentError(
            f"The agent answered {_status_line(response.status_code)}.",
            retryable=retryable,
            status=response.status_code,
        )
    try:
        payload = response.json()
    except ValueError:
        raise HttpAgentError(
            'The agent\'s answer is not JSON: the contract needs {"output": ...}.',
            retryable=False,
            status=response.status_code,
        ) from None
    if not isinstance(payload, dict) or "output" not in payload:
        raise HttpAgentError(
            'The agent\'s answer has no "output" key: the contract needs '
            '{"output": ..., "context": {...}?}.',
            retryable=False,
            status=response.status_code,
        )
    extra_context = payload.get("context") or {}
    if not isinstance(extra_context, dict):
        raise HttpAgentError(
            '"context" in the agent\'s answer must be an object.',
            retryable=False,
            status=response.status_code,
        )
    return HttpAgentResult(
        output=payload["output"],
        context=extra_context,
        status=response.status_code,
        latency_ms=latency,
    )


def auth_value(auth_format: str, secret: str) -> str:
    """``auth_format`` with each ``{}`` or ``{secret}`` replaced by the secret; no other
    text is interpreted (it is not a Python format string)."""
    return AUTH_PLACEHOLDER.sub(lambda _match: secret, auth_format)


def auth_format_problem(auth_format: str) -> str | None:
    """Why ``auth_format`` cannot be saved, or None: exactly one placeholder, no other braces."""
    placeholders = len(AUTH_PLACEHOLDER.findall(auth_format))
    rest = AUTH_PLACEHOLDER.sub("", auth_format)
    if "{" in rest or "}" in rest or placeholders != 1:
        return (
            "Write the header value with {} (or {secret}) once where the secret goes, "
            "e.g. 'Bearer {}'; no other braces."
        )
    return None


def _status_line(status: int) -> str:
    try:
        return f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


async def _post(
    url: str, body: dict[str, Any], headers: dict[str, str], timeout: float
) -> httpx.Response:
    """One POST on the process's I/O loop: cancelling the step closes the connection."""
    async with httpx.AsyncClient(
        transport=egress.httpx_async_transport(), follow_redirects=False
    ) as client:
        return await client.post(url, json=body, headers=headers, timeout=timeout)


def _where(url: str) -> str:
    """``scheme://host[:port]`` of the agent's URL: no path or query (they may carry tokens)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "its URL"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"
