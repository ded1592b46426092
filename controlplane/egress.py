"""The egress guard: outbound calls reach public internet addresses only.

Every outbound HTTP client of the product (model providers through the ``openai`` and
``anthropic`` SDKs, HTTP tools, the ``http_request`` built-in, http agents, MCP servers
over streamable HTTP) is built here. Their connection pools use a network backend that
resolves the host itself, refuses the call when any address it resolves to is loopback,
link-local (cloud metadata at 169.254.169.254 included), private, shared (CGNAT),
unique-local, multicast, reserved or unspecified, and then connects to the address it
checked. So the check holds at connect time, for every redirect hop and every retry,
and a DNS answer that changes between a check and the connection (rebinding) cannot
slip through. Networks listed in the ``EGRESS_ALLOWED_NETWORKS`` setting are let
through: a model server on the operator's own network, or the loopback servers of the
test suite.

The module knows no domain app: callers turn ``EgressRefused`` into their own errors.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore
import httpcore2
import httpx
import httpx2
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "EGRESS_ALLOWED_NETWORKS"
_EMBEDDED = re.compile(r"an IPv6 form of [^,]+, ")
logger = logging.getLogger("controlplane.egress")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: an IPv4 address inside IPv6
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_METADATA = ipaddress.ip_address("169.254.169.254")
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


class EgressRefused(Exception):
    """An outbound connection the guard refused; ``message`` names the host and the reason."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        if host == address:
            said = f"{address} is {reason}"
        else:
            # A name's addresses stay out of the message (and go to the log): the message
            # must not become a way to read the internal DNS.
            said = f"{host} resolves to {_EMBEDDED.sub('', reason)}"
            logger.info("egress refused: %s resolves to %s (%s)", host, address, reason)
        self.message = (
            f"Outbound call refused: {said}. Calls to non-public addresses are blocked; an "
            f"operator can allow a network with {SETTING}."
        )
        super().__init__(self.message)


@functools.lru_cache(maxsize=16)
def _parse(networks: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


def allowed_networks() -> tuple[IPNetwork, ...]:
    """The networks the installation lets outbound calls reach despite being non-public."""
    return _parse(tuple(getattr(settings, SETTING, None) or ()))


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def _kind(ip: IPAddress) -> str | None:
    """What makes ``ip`` non-public, in a few words; None for a public address."""
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip == _METADATA:
        return "the link-local cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL:
        return "a unique-local address"
    if any(ip in net for net in _RFC1918):
        return "a private-network address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "a reserved, non-public address"
    return None


def _listed(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def refusal(ip: IPAddress | str) -> str | None:
    """Why a connection to ``ip`` is refused, or None when it is allowed."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.strip("[]").split("%", 1)[0])
    networks = allowed_networks()
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        if _listed(ip, networks) or _listed(embedded, networks):
            return None
        inner = _kind(embedded)
        if inner is not None:
            return f"an IPv6 form of {embedded}, {inner}"
    if _listed(ip, networks):
        return None
    return _kind(ip)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_addresses(host: str, addresses: Iterable[str]) -> list[str]:
    """The addresses, in order and without repeats, once every one of them is allowed.

    Refuses (``EgressRefused``) when any address is not: a name that resolves to a public
    and a private address is refused rather than half-trusted.
    """
    checked: list[str] = []
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            raise EgressRefused(host, address, reason)
        if address not in checked:
            checked.append(address)
    return checked


def _host_of(host: str | bytes) -> str:
    return (host.decode("ascii") if isinstance(host, bytes) else host).strip("[]")


def resolve(host: str, port: int) -> list[str]:
    """The checked addresses of ``host`` (blocking DNS lookup). ``socket.gaierror`` passes up."""
    literal = _literal(host)
    if literal is not None:
        return check_addresses(host, [str(literal)])
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return check_addresses(host, [str(info[4][0]) for info in infos])


async def aresolve(host: str, port: int) -> list[str]:
    """``resolve`` for async code: the lookup runs in a worker thread."""
    literal = _literal(host)
    if literal is not None:
        return check_addresses(host, [str(literal)])
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return check_addresses(host, [str(info[4][0]) for info in infos])


def check_url(url: str) -> str | None:
    """Why ``url`` is refused without a DNS lookup (a literal non-public IP), else None.

    For registration-time checks that give a 400 early; the connect-time guard is what
    makes the promise, since a name may resolve differently later.
    """
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return None
    literal = _literal(host)
    if literal is None:
        if host.rstrip(".").lower() == "localhost" or host.endswith(".localhost"):
            literal = ipaddress.ip_address("127.0.0.1")
        else:
            return None
    reason = refusal(literal)
    if reason is None:
        return None
    return EgressRefused(host, str(literal), reason).message


class _GuardedBackend:
    """A sync httpcore/httpcore2 network backend that connects only to checked addresses."""

    def __init__(self, inner: Any, connect_error: type[Exception]) -> None:
        self._inner = inner
        self._connect_error = connect_error

    def connect_tcp(self, host: str, port: int, **kwargs: Any) -> Any:
        name = _host_of(host)
        try:
            addresses = resolve(name, port)
        except OSError as exc:  # the lookup failed: the library's own connect error
            raise self._connect_error(str(exc)) from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, **kwargs)
            except self._connect_error as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        raise EgressRefused("a unix socket", "a unix socket", "not a network address")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncGuardedBackend:
    """The async counterpart of ``_GuardedBackend`` (anyio: asyncio or trio)."""

    def __init__(self, inner: Any, connect_error: type[Exception]) -> None:
        self._inner = inner
        self._connect_error = connect_error

    async def connect_tcp(self, host: str, port: int, **kwargs: Any) -> Any:
        name = _host_of(host)
        try:
            addresses = await aresolve(name, port)
        except OSError as exc:
            raise self._connect_error(str(exc)) from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, **kwargs)
            except self._connect_error as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        raise EgressRefused("a unix socket", "a unix socket", "not a network address")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _guard_pool(transport: Any, guarded: type, connect_error: type[Exception]) -> Any:
    # The transports take no backend argument; their pool reads this attribute whenever it
    # opens a connection. A library change that drops it must fail loudly, not open a hole.
    pool = transport._pool
    if not hasattr(pool, "_network_backend"):
        raise RuntimeError("The HTTP library changed: the egress guard cannot be installed.")
    pool._network_backend = guarded(pool._network_backend, connect_error)
    return transport


def httpx_transport() -> httpx.HTTPTransport:
    """An ``httpx`` transport whose every connection passes the guard.

    A client given a transport ignores HTTP_PROXY and friends, so no proxy connects for us.
    """
    return _guard_pool(httpx.HTTPTransport(), _GuardedBackend, httpcore.ConnectError)


def httpx_async_transport() -> httpx.AsyncHTTPTransport:
    """The async counterpart of ``httpx_transport`` (HTTP tools on the I/O loop)."""
    return _guard_pool(httpx.AsyncHTTPTransport(), _AsyncGuardedBackend, httpcore.ConnectError)


def httpx2_transport() -> httpx2.HTTPTransport:
    """An ``httpx2`` transport (the ``openai`` and ``anthropic`` SDKs) behind the guard."""
    return _guard_pool(httpx2.HTTPTransport(), _GuardedBackend, httpcore2.ConnectError)


def httpx2_async_transport(max_connections: int = 100) -> httpx2.AsyncHTTPTransport:
    """An async ``httpx2`` transport (the SDKs' async clients, the ``mcp`` client) behind the
    guard, with at most ``max_connections`` open at once."""
    limits = httpx2.Limits(
        max_connections=max_connections, max_keepalive_connections=min(max_connections, 100)
    )
    return _guard_pool(
        httpx2.AsyncHTTPTransport(limits=limits), _AsyncGuardedBackend, httpcore2.ConnectError
    )


def refused_in(err: BaseException | None) -> EgressRefused | None:
    """The ``EgressRefused`` in an exception's cause/context chain or group, if any."""
    seen: set[int] = set()
    stack: list[BaseException] = [err] if err is not None else []
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, EgressRefused):
            return current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    return None
