"""Allowed hosts of HTTP tools: the patterns a tool may list and the check of a URL against them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

from agents.tools.errors import ToolError


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
