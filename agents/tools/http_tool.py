"""Tools of kind ``http``: one configured HTTP endpoint, called with the tool's arguments.

``tool.url`` may hold ``{placeholders}`` filled (URL-encoded) from the arguments; the
arguments left over become the JSON body of a POST/PUT/PATCH or the query of a GET/DELETE.
Header values (plain or secret) may reference a tenant secret as ``${secret:name}``.
Every hop, redirects included, must go to an allowed host. Secret header values are never
logged and are scrubbed from anything returned or raised.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from agents.models import Secret
from agents.tools.base import (
    ToolContext,
    ToolError,
    check_host_allowed,
    egress_error,
    no_answer,
    status_line,
)
from controlplane import aio, egress

if TYPE_CHECKING:
    from agents.models import Tool

logger = logging.getLogger("agents.tools.http")

BODY_METHODS = ("POST", "PUT", "PATCH")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_RESPONSE_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 5
REDACTED = "[redacted]"
USER_AGENT = "controlplane-tools/1"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_REF = re.compile(r"\$\{secret:([a-z0-9-]+)\}")
# Shorter values would turn scrubbing into mangling of ordinary text.
MIN_SCRUB_LENGTH = 4


@dataclasses.dataclass
class HttpResponse:
    """A finished HTTP exchange: final URL, status and (size-capped) body."""

    status: int
    reason: str
    url: str
    content_type: str
    body: bytes

    @property
    def text(self) -> str:
        charset = "utf-8"
        match = re.search(r"charset=([\w-]+)", self.content_type)
        if match:
            charset = match.group(1)
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def parsed_json(self) -> tuple[bool, Any]:
        """``(True, value)`` when the body is JSON, else ``(False, None)``."""
        if not self.body.strip():
            return False, None
        try:
            return True, json.loads(self.text)
        except ValueError:
            return False, None


def scrub(value: Any, secrets: list[str]) -> Any:
    """A copy of ``value`` with every occurrence of a secret string replaced."""
    secrets = [s for s in secrets if len(s) >= MIN_SCRUB_LENGTH]
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(item, secrets) for item in value]
    return value


def _log_url(url: str) -> str:
    # Scheme, host and path only: query strings are arguments, which logs do not keep.
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}{parsed.path}"


def _redirect_target(response: httpx.Response) -> str | None:
    if response.status_code not in (301, 302, 303, 307, 308):
        return None
    location = response.headers.get("location")
    if not location:
        return None
    return str(response.request.url.join(location))


async def _read_capped(response: httpx.Response, deadline: float, timeout_seconds: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ToolError(
                f"The response is larger than {MAX_RESPONSE_BYTES // (1024 * 1024)} MiB.",
                code="upstream_error",
            )
        if time.monotonic() > deadline:
            raise _timeout(response.request.url.host, timeout_seconds)
        chunks.append(chunk)
    return b"".join(chunks)


def _timeout(host: str, timeout_seconds: float) -> ToolError:
    return no_answer(host, code="timeout", within=timeout_seconds)


async def send_http_async(
    *,
    method: str,
    url: str,
    allowed_hosts: list[str],
    headers: dict[str, str],
    secret_header_names: set[str],
    timeout_seconds: float,
    deadline: float | None = None,
    json_body: Any = None,
    send_body: bool = False,
    params: list[tuple[str, str]] | None = None,
) -> HttpResponse:
    """Send one request (following at most ``MAX_REDIRECTS`` redirects) to allowed hosts only.

    The host of every hop is checked before anything is sent, and every connection goes
    through the egress guard (no loopback or private address unless the installation
    allows it). Headers named in ``secret_header_names`` are dropped when a redirect leaves
    the original host. Network failures and timeouts become ``ToolError`` in one wording
    that does not tell a closed port from a server that speaks something else; HTTP
    statuses do not raise.

    ``send_http`` is its sync twin: it runs the request on the process's I/O loop
    (``controlplane.aio``), where waiting costs no thread in a socket and cancelling the
    step closes the connection at once.
    """
    deadline = deadline if deadline is not None else time.monotonic() + timeout_seconds
    method = method.upper()
    host = check_host_allowed(url, allowed_hosts)
    first_host = host
    request_headers = {"User-Agent": USER_AGENT, **headers}
    async with httpx.AsyncClient(
        follow_redirects=False, transport=egress.httpx_async_transport()
    ) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout(host, timeout_seconds)
            request = client.build_request(
                method,
                url,
                headers=request_headers,
                params=params,
                json=json_body if send_body else None,
                timeout=httpx.Timeout(remaining),
            )
            started = time.monotonic()
            try:
                response = await client.send(request, stream=True)
                try:
                    target = _redirect_target(response)
                    body = (
                        b"" if target else await _read_capped(response, deadline, timeout_seconds)
                    )
                finally:
                    await response.aclose()
            except egress.EgressRefused as exc:
                raise egress_error(exc) from None
            except httpx.TimeoutException:
                raise _timeout(host, timeout_seconds) from None
            except httpx.HTTPError:
                raise no_answer(host) from None
            logger.info(
                "%s %s -> %s in %.0f ms",
                method,
                _log_url(url),
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
            if target is None:
                return HttpResponse(
                    status=response.status_code,
                    reason=response.reason_phrase,
                    url=url,
                    content_type=response.headers.get("content-type", ""),
                    body=body,
                )
            host = check_host_allowed(target, allowed_hosts)
            url = target
            if host != first_host:
                request_headers = {
                    k: v for k, v in request_headers.items() if k.lower() not in secret_header_names
                }
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method not in ("GET", "HEAD")
            ):
                method, send_body, params = "GET", False, None
    raise ToolError(
        f"{first_host} redirected more than {MAX_REDIRECTS} times.", code="upstream_error"
    )


send_http = aio.blocking(send_http_async)


def raise_for_status(response: HttpResponse, secrets: list[str]) -> None:
    """``ToolError(upstream_error)`` for a non-2xx answer; retryable for 5xx and 429.

    The message is the status line in standard words, never the body or the server's own
    reason phrase: an error must not become a way to read what a server answered.
    """
    if 200 <= response.status < 300:
        return
    host = httpx.URL(response.url).host
    raise ToolError(
        f"{host} answered {status_line(response.status)}.",
        code="upstream_error",
        retryable=response.status >= 500 or response.status == 429,
        details={"status": response.status},
    )


def resolve_secret_refs(tenant: Any, value: str, found: list[str]) -> str:
    """``value`` with each ``${secret:name}`` replaced by the tenant's secret; appends to found."""

    def replace(match: re.Match[str]) -> str:
        secret = Secret.objects.for_tenant(tenant).filter(name=match.group(1)).first()
        if secret is None:
            raise ToolError(
                f"The secret {match.group(1)!r} referenced in a header does not exist.",
                code="not_found",
            )
        found.append(secret.value)
        return secret.value

    return SECRET_REF.sub(replace, value)


def build_headers(tool: Tool, ctx: ToolContext) -> tuple[dict[str, str], set[str], list[str]]:
    """The request headers, the lower-cased names that carry secrets, and the secret values."""
    secrets: list[str] = []
    secret_names: set[str] = set()
    headers: dict[str, str] = {}
    for name, value in (tool.headers or {}).items():
        before = len(secrets)
        headers[name] = resolve_secret_refs(tool.tenant, str(value), secrets)
        if len(secrets) > before:
            secret_names.add(name.lower())
    for name, value in (tool.secret_headers or {}).items():
        headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
        resolved = resolve_secret_refs(tool.tenant, str(value), secrets)
        secrets.append(resolved)
        headers[name] = resolved
        secret_names.add(name.lower())
    if ctx.idempotency_key:
        headers["Idempotency-Key"] = ctx.idempotency_key
    return headers, secret_names, secrets


def fill_url(template: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL with placeholders filled from ``arguments``, and the arguments not used."""
    used: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in arguments:
            raise ToolError(
                f"The URL needs the argument {name!r}.",
                code="invalid_arguments",
                details={"errors": [{"path": "$", "message": f"'{name}' is required"}]},
            )
        value = arguments[name]
        if isinstance(value, dict | list) or value is None:
            raise ToolError(
                f"The argument {name!r} goes into the URL, so it must be a string or a number.",
                code="invalid_arguments",
                details={"errors": [{"path": f"$.{name}", "message": "must be a scalar"}]},
            )
        used.add(name)
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return quote(text, safe="")

    url = PLACEHOLDER.sub(replace, template)
    return url, {k: v for k, v in arguments.items() if k not in used}


def _query_params(arguments: dict[str, Any]) -> list[tuple[str, str]]:
    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"))
        return "" if value is None else str(value)

    params: list[tuple[str, str]] = []
    for key, value in arguments.items():
        if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
            params.extend((key, text(v)) for v in value)
        else:
            params.append((key, text(value)))
    return params


def execute_http(tool: Tool, arguments: dict[str, Any], ctx: ToolContext) -> Any:
    """Call the tool's endpoint; the parsed JSON answer, or ``{"status", "text"}`` for non-JSON.

    Sends ``Idempotency-Key`` when the context has one. Non-2xx answers raise
    ``ToolError(upstream_error)`` with the status (retryable for 5xx and 429).
    """
    method = (tool.method or "GET").upper()
    if method not in METHODS:
        raise ToolError(f"Tool {tool.slug!r} has an unsupported method {method}.", code="not_found")
    url, rest = fill_url(tool.url, arguments)
    headers, secret_names, secrets = build_headers(tool, ctx)
    with_body = method in BODY_METHODS
    response = send_http(
        method=method,
        url=url,
        allowed_hosts=list(tool.allowed_hosts or []),
        headers=headers,
        secret_header_names=secret_names,
        timeout_seconds=float(tool.timeout_seconds or 30),
        deadline=ctx.deadline,
        json_body=rest if with_body else None,
        send_body=with_body,
        params=None if with_body or not rest else _query_params(rest),
    )
    raise_for_status(response, secrets)
    is_json, value = response.parsed_json()
    if is_json:
        return scrub(value, secrets)
    return {"status": response.status, "text": scrub(response.text, secrets)}
