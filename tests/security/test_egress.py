"""The egress guard (issue 11): no outbound path reaches a non-public address unless allowed.

Every outbound path is driven for real (the openai and anthropic SDKs, the HTTP tool, the
``http_request`` built-in, the http agent contract, the MCP client over streamable HTTP)
with ``EGRESS_ALLOWED_NETWORKS`` emptied, against loopback, private, link-local and a
host name that resolves to loopback. A loopback server records whatever reaches it, so
"refused" means nothing was sent. Refusals happen before any connection: no test waits.
Also: errors never quote upstream bodies, network failures read alike, ``auth_format`` is
not a format string, a models answer without ``data`` and an allowed host ``[x`` are
plain errors.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import pytest
from django.core.exceptions import ImproperlyConfigured

from agents.choices import McpTransport, ProviderKind, ToolKind
from agents.http_agent import HttpAgentError, auth_value, call_http_agent
from agents.models import McpServer, ProviderConnection, Tool
from agents.providers.base import Message, ProviderError, get_adapter
from agents.tools.base import ToolContext, ToolError, execute_tool
from agents.tools.builtin import BUILTINS
from agents.tools.mcp_client import discover
from controlplane import egress
from controlplane.env import Env
from tests.agents.registry_factories import make_agent, make_secret
from tests.api_mixins import assert_error_shape
from tests.factories import TenantFactory

_seq = itertools.count(1)
LEAK = "INTERNAL-ONLY-7c1e"  # what an internal service would answer; must never surface
KEY = "sk-egress-test-0000000000"

# Addresses refused by default, each with the words that name the reason.
REFUSED = [
    pytest.param("127.0.0.1", "127.0.0.1 is a loopback address", id="loopback"),
    pytest.param("[::1]", "::1 is a loopback address", id="loopback-v6"),
    pytest.param("10.20.30.40", "10.20.30.40 is a private-network address", id="private"),
    pytest.param("192.168.1.1", "192.168.1.1 is a private-network address", id="private-192"),
    pytest.param(
        "169.254.169.254",
        "169.254.169.254 is the link-local cloud metadata address",
        id="metadata",
    ),
    pytest.param("localhost", "localhost resolves to a loopback address", id="name-to-loopback"),
]


# A loopback server that answers by path and records what reaches it ------------------------


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path.split("?", 1)[0])
        status, headers, body, reason = route or (200, {}, {"output": {"ok": True}}, None)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer


def serve(host: str):
    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    server.requests = []
    server.routes = {}
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server


@pytest.fixture
def upstream():
    server = serve("127.0.0.1")
    server.port = server.server_address[1]
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def other_loopback():
    """A server on 127.0.0.2: loopback, but outside an allow-list of 127.0.0.1/32."""
    server = serve("127.0.0.2")
    server.port = server.server_address[1]
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def not_http():
    """A TCP port that answers like Redis, not HTTP, then closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"-ERR unknown command 'GET'\r\n")

    threading.Thread(target=loop, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_egress(settings):
    """The guard as shipped: nothing non-public is allowed."""
    settings.EGRESS_ALLOWED_NETWORKS = []
    return settings


@pytest.fixture
def tenant(db):
    return TenantFactory(slug="acme")


def url_for(host: str, port: int, path: str = "/") -> str:
    return f"http://{host}:{port}{path}"


# The outbound paths, each returning the error text of a refused or failed call -------------


def provider(tenant, kind: str, base_url: str, slug: str = "") -> ProviderConnection:
    return ProviderConnection.objects.unscoped().create(
        tenant=tenant,
        slug=slug or f"{kind}-{next(_seq)}",
        name=kind,
        kind=kind,
        base_url=base_url,
        api_key=KEY,
        models=[{"name": "m"}],
        timeout_seconds=5,
    )


def provider_check(tenant, kind: str, base_url: str, slug: str = "") -> str:
    check = get_adapter(provider(tenant, kind, base_url, slug)).test_connection()
    assert check.ok is False
    return check.message


def provider_chat(tenant, kind: str, base_url: str) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        get_adapter(provider(tenant, kind, base_url)).chat(
            model="m", messages=[Message("user", "Hi")]
        )
    return caught.value


def tool_call(tool: Tool, arguments: dict) -> ToolError:
    with pytest.raises(ToolError) as caught:
        execute_tool(tool, arguments, ToolContext(tenant=tool.tenant))
    return caught.value


def http_tool(tenant, url: str, allowed: list[str]) -> Tool:
    return Tool.objects.unscoped().create(
        tenant=tenant,
        slug="partner",
        name="Partner",
        kind=ToolKind.HTTP,
        url=url,
        method="GET",
        allowed_hosts=allowed,
        timeout_seconds=5,
    )


def http_request_tool(tenant, allowed: list[str]) -> Tool:
    spec = BUILTINS["http_request"]
    return Tool.objects.unscoped().create(
        tenant=tenant,
        slug="fetch",
        name="Fetch",
        kind=ToolKind.BUILTIN,
        builtin="http_request",
        input_schema=spec.input_schema,
        output_schema=spec.output_schema,
        risk=spec.risk,
        allowed_hosts=allowed,
        timeout_seconds=5,
    )


@pytest.fixture
def http_agent(tenant, settings):
    """An http agent registered on a public URL; each test points it somewhere else."""
    make_secret(tenant, name="agent-key", value="agent-key-value-1234")
    agent = make_agent(
        tenant,
        slug="ext",
        kind="http",
        config={
            "url": "https://agent.example.com/run",
            "auth_secret": "agent-key",
            "timeout_seconds": 5,
        },
    )
    return agent.current_version


def agent_call(version, url: str) -> HttpAgentError:
    version.config = {**version.config, "url": url}
    with pytest.raises(HttpAgentError) as caught:
        call_http_agent(
            version=version, input={}, context={}, run_id="r", step="s", idempotency_key="k"
        )
    return caught.value


def mcp_server(tenant, url: str) -> McpServer:
    return McpServer.objects.unscoped().create(
        tenant=tenant,
        slug="mcp",
        name="MCP",
        transport=McpTransport.HTTP,
        url=url,
        timeout_seconds=5,
    )


def mcp_discover(tenant, url: str) -> ToolError:
    with pytest.raises(ToolError) as caught:
        discover(mcp_server(tenant, url))
    return caught.value


# Every outbound path refuses every non-public target -----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("host", "reason"), REFUSED)
class TestEveryPathRefusesNonPublicAddresses:
    def target(self, host: str, upstream) -> tuple[str, str]:
        # The tool's host allow-list names the host too: the guard is what refuses.
        return url_for(host, upstream.port), host

    def assert_refused(self, message: str, reason: str, upstream) -> None:
        assert reason in message
        assert "EGRESS_ALLOWED_NETWORKS" in message
        assert upstream.requests == []  # nothing reached the server

    @pytest.mark.parametrize("kind", [ProviderKind.OPENAI, ProviderKind.ANTHROPIC])
    def test_provider_test_connection(self, no_egress, tenant, upstream, host, reason, kind):
        base, _ = self.target(host, upstream)
        self.assert_refused(provider_check(tenant, kind, base + "v1"), reason, upstream)

    @pytest.mark.parametrize("kind", [ProviderKind.OPENAI, ProviderKind.ANTHROPIC])
    def test_provider_model_call(self, no_egress, tenant, upstream, host, reason, kind):
        base, _ = self.target(host, upstream)
        err = provider_chat(tenant, kind, base + "v1")
        self.assert_refused(err.message, reason, upstream)
        assert err.retryable is False

    def test_http_tool(self, no_egress, tenant, upstream, host, reason):
        url, bare = self.target(host, upstream)
        err = tool_call(http_tool(tenant, url + "echo", [bare]), {})
        self.assert_refused(err.message, reason, upstream)
        assert (err.code, err.retryable) == ("egress_refused", False)

    def test_http_request_builtin(self, no_egress, tenant, upstream, host, reason):
        url, bare = self.target(host, upstream)
        err = tool_call(http_request_tool(tenant, [bare]), {"url": url + "echo"})
        self.assert_refused(err.message, reason, upstream)
        assert err.code == "egress_refused"

    def test_http_agent(self, no_egress, http_agent, upstream, host, reason):
        url, _ = self.target(host, upstream)
        err = agent_call(http_agent, url + "run")
        self.assert_refused(err.message, reason, upstream)
        assert err.retryable is False

    def test_mcp_server_over_http(self, no_egress, tenant, upstream, host, reason):
        url, _ = self.target(host, upstream)
        err = mcp_discover(tenant, url + "mcp")
        self.assert_refused(err.message, reason, upstream)
        assert err.code == "egress_refused"


# A redirect from an allowed address to a refused one is refused at the hop ------------------


@pytest.fixture
def only_first_loopback(settings, upstream, other_loopback):
    """127.0.0.1 is allowed, 127.0.0.2 is not; the allowed server redirects there."""
    settings.EGRESS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    target = url_for("127.0.0.2", other_loopback.port, "/landed")
    for path in ("/hop", "/v1/models", "/v1/chat/completions", "/v1/messages"):
        upstream.routes[path] = (307, {"Location": target}, b"", None)
    return upstream


@pytest.mark.django_db
class TestRedirectsToRefusedAddresses:
    REASON = "127.0.0.2 is a loopback address"

    def assert_refused_at_hop(self, message: str, upstream, other_loopback) -> None:
        assert self.REASON in message
        assert upstream.requests  # the allowed server was asked ...
        assert other_loopback.requests == []  # ... and the redirect went nowhere

    @pytest.mark.parametrize("kind", [ProviderKind.OPENAI, ProviderKind.ANTHROPIC])
    def test_providers(self, tenant, only_first_loopback, other_loopback, kind):
        path = "/v1" if kind == ProviderKind.OPENAI else ""
        base = url_for("127.0.0.1", only_first_loopback.port, path)
        message = provider_check(tenant, kind, base)
        self.assert_refused_at_hop(message, only_first_loopback, other_loopback)
        error = provider_chat(tenant, kind, base)
        self.assert_refused_at_hop(error.message, only_first_loopback, other_loopback)

    def test_http_tool(self, tenant, only_first_loopback, other_loopback):
        tool = http_tool(
            tenant,
            url_for("127.0.0.1", only_first_loopback.port, "/hop"),
            ["127.0.0.1", "127.0.0.2"],  # the host allow-list passes: the guard refuses
        )
        err = tool_call(tool, {})
        self.assert_refused_at_hop(err.message, only_first_loopback, other_loopback)
        assert err.code == "egress_refused"

    def test_http_request_builtin(self, tenant, only_first_loopback, other_loopback):
        tool = http_request_tool(tenant, ["127.0.0.1", "127.0.0.2"])
        err = tool_call(tool, {"url": url_for("127.0.0.1", only_first_loopback.port, "/hop")})
        self.assert_refused_at_hop(err.message, only_first_loopback, other_loopback)


# Allowed when the network is listed ---------------------------------------------------------


@pytest.mark.django_db
class TestListedNetworksAreReached:
    @pytest.fixture(autouse=True)
    def allow_loopback(self, settings):
        settings.EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8"]

    def test_providers(self, tenant, upstream):
        upstream.routes["/v1/models"] = (200, {}, {"object": "list", "data": []}, None)
        check = get_adapter(
            provider(tenant, ProviderKind.OPENAI, url_for("127.0.0.1", upstream.port, "/v1"))
        ).test_connection()
        assert check.ok is True
        assert upstream.requests == ["/v1/models"]

    def test_tools_and_agents(self, tenant, upstream, http_agent):
        url = url_for("localhost", upstream.port, "/run")
        tool_result = execute_tool(
            http_tool(tenant, url, ["localhost"]), {}, ToolContext(tenant=tenant)
        )
        http_agent.config = {**http_agent.config, "url": url}
        agent_result = call_http_agent(
            version=http_agent, input={}, context={}, run_id="r", step="s", idempotency_key="k"
        )
        assert tool_result == {"output": {"ok": True}}
        assert agent_result.output == {"ok": True}
        assert len(upstream.requests) == 2

    def test_mcp_reaches_the_server(self, tenant, upstream):
        upstream.routes["/mcp"] = (404, {}, {"detail": LEAK}, None)
        err = mcp_discover(tenant, url_for("127.0.0.1", upstream.port, "/mcp"))
        assert err.code == "upstream_error"  # it connected: the server's answer is the error
        assert upstream.requests and upstream.requests[0] == "/mcp"
        assert LEAK not in err.message


# Errors never quote upstream bodies or reason phrases --------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("status", [400, 404, 500])
def test_errors_carry_a_status_line_never_the_upstream_body(tenant, upstream, http_agent, status):
    body = {"error": {"message": f"secret row: {LEAK}", "type": "x"}, "detail": LEAK}
    reason = f"Oops {LEAK}"
    for path in ("/v1/models", "/v1/chat/completions", "/v1/messages", "/tool", "/run", "/mcp"):
        upstream.routes[path] = (status, {}, body, reason)
    base = f"http://127.0.0.1:{upstream.port}"
    texts = [
        provider_check(tenant, ProviderKind.OPENAI, base + "/v1"),
        provider_chat(tenant, ProviderKind.OPENAI, base + "/v1").message,
    ]
    texts += [
        provider_check(tenant, ProviderKind.ANTHROPIC, base),
        provider_chat(tenant, ProviderKind.ANTHROPIC, base).message,
        tool_call(http_tool(tenant, base + "/tool", ["127.0.0.1"]), {}).message,
        tool_call(http_request_tool(tenant, ["127.0.0.1"]), {"url": base + "/tool"}).message,
        agent_call(http_agent, base + "/run").message,
        mcp_discover(tenant, base + "/mcp").message,
    ]
    for text in texts:
        assert LEAK not in text
        assert "Oops" not in text
    # The MCP client words a 404 as the SDK's own "Not Found" (still no body).
    assert all(f"HTTP {status}" in text for text in texts[: -1 if status == 404 else None])
    tool_text = texts[4]
    assert (
        tool_text
        == f"127.0.0.1 answered HTTP {status} "
        + {
            400: "Bad Request.",
            404: "Not Found.",
            500: "Internal Server Error.",
        }[status]
    )


@pytest.mark.django_db
def test_closed_and_non_http_ports_read_alike(tenant, http_agent, closed_port, not_http):
    """A refused connection and a Redis-like port give the same words on every path."""

    def messages(port: int) -> list[str]:
        base = f"http://127.0.0.1:{port}"
        ProviderConnection.objects.unscoped().all().delete()
        Tool.objects.unscoped().all().delete()
        McpServer.objects.unscoped().all().delete()
        return [
            provider_check(tenant, ProviderKind.OPENAI, base + "/v1", slug="same"),
            tool_call(http_tool(tenant, base + "/x", ["127.0.0.1"]), {}).message,
            agent_call(http_agent, base + "/run").message,
            mcp_discover(tenant, base + "/mcp").message,
        ]

    closed, redis_like = messages(closed_port), messages(not_http)
    for a, b in zip(closed, redis_like, strict=True):
        assert a.replace(str(closed_port), "PORT") == b.replace(str(not_http), "PORT")
    assert all("ERR" not in m and "refused" not in m for m in redis_like)


# The guard itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "cloud metadata"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private-network"),
        ("172.16.5.4", "private-network"),
        ("192.168.0.1", "private-network"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("fd12:3456::1", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "IPv6 form of 127.0.0.1, a loopback"),
        ("::ffff:169.254.169.254", "IPv6 form of 169.254.169.254"),
        ("64:ff9b::a00:1", "IPv6 form of 10.0.0.1"),
        ("192.0.2.10", "reserved"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_non_public_addresses_are_named(settings, address, words):
    settings.EGRESS_ALLOWED_NETWORKS = []
    assert words in egress.refusal(address)


def test_public_and_listed_addresses_pass(settings):
    settings.EGRESS_ALLOWED_NETWORKS = ["10.20.0.0/16", "::1/128"]
    assert egress.refusal("93.184.216.34") is None
    assert egress.refusal("2606:4700:4700::1111") is None
    assert egress.refusal("10.20.1.2") is None
    assert egress.refusal("::1") is None
    assert egress.refusal("::ffff:10.20.1.2") is None  # the mapped form of a listed address
    assert "private" in egress.refusal("10.21.0.1")
    assert "loopback" in egress.refusal("127.0.0.1")


def test_a_name_with_one_refused_address_is_refused(settings):
    settings.EGRESS_ALLOWED_NETWORKS = []
    with pytest.raises(egress.EgressRefused) as caught:
        egress.check_addresses("mixed.example", ["93.184.216.34", "10.0.0.7"])
    assert caught.value.message.startswith(
        "Outbound call refused: mixed.example resolves to a private-network address."
    )
    assert "10.0.0.7" not in caught.value.message  # internal DNS is not for tenants to read


def test_the_backend_connects_to_the_address_it_checked(settings):
    """No second lookup at connect time, so a DNS answer that changes cannot slip through."""
    settings.EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    asked: list[str] = []

    class Recording:
        def connect_tcp(self, host: str, port: int, **kwargs: Any):
            asked.append(host)
            raise httpcore.ConnectError("recorded")

    backend = egress._GuardedBackend(Recording(), httpcore.ConnectError)
    with pytest.raises(httpcore.ConnectError):
        backend.connect_tcp("localhost", 80, timeout=1)
    assert asked and all(egress._literal(h) is not None for h in asked)  # IP literals only


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("127.0.0.0/8,::1/128", True),
        ("10.0.0.5", True),
        ("10.0.0.5/8", False),  # host bits set: say 10.0.0.0/8
        ("localhost", False),
        ("10.0.0.0/8,", False),
    ],
)
def test_the_setting_is_parsed_strictly(value, ok):
    env = Env({"EGRESS_ALLOWED_NETWORKS": value})
    if ok:
        assert env.networks("EGRESS_ALLOWED_NETWORKS", []) == value.split(",")
    else:
        with pytest.raises(ImproperlyConfigured, match="EGRESS_ALLOWED_NETWORKS"):
            env.networks("EGRESS_ALLOWED_NETWORKS", [])


# Registration: literal non-public addresses, allowed hosts, auth_format -------------------


@pytest.mark.django_db
class TestRegistration:
    @pytest.fixture(autouse=True)
    def as_shipped(self, settings):
        settings.EGRESS_ALLOWED_NETWORKS = []

    def post(self, api, world, path: str, data: dict):
        return api(world.alice, world.acme).post(f"/api/v1/t/acme/{path}/", data, format="json")

    def test_literal_private_urls_are_a_400(self, api, world):
        provider_resp = self.post(
            api,
            world,
            "providers",
            {"slug": "p", "name": "P", "kind": "openai", "base_url": "http://169.254.169.254/v1"},
        )
        tool_resp = self.post(
            api,
            world,
            "tools",
            {
                "slug": "t",
                "name": "T",
                "kind": "http",
                "url": "http://127.0.0.1:8000/api/v1/",
                "allowed_hosts": ["127.0.0.1:8000"],
            },
        )
        mcp_resp = self.post(
            api,
            world,
            "mcp-servers",
            {"slug": "m", "name": "M", "transport": "http", "url": "http://[::1]:9/mcp"},
        )
        agent_resp = self.post(
            api,
            world,
            "agents",
            {"slug": "a", "name": "A", "kind": "http", "config": {"url": "http://10.1.1.1/run"}},
        )
        for response, attr, words in [
            (provider_resp, "base_url", "169.254.169.254 is the link-local cloud metadata"),
            (tool_resp, "url", "127.0.0.1 is a loopback address"),
            (mcp_resp, "url", "::1 is a loopback address"),
            (agent_resp, "config.url", "10.1.1.1 is a private-network address"),
        ]:
            body = assert_error_shape(response, 400, attr=attr)
            assert words in json.dumps(body)

    @pytest.mark.parametrize("hosts", [["[x"], ["api.example.com", "[::1"], ["http://a.b/"]])
    def test_a_broken_allowed_host_is_a_400(self, api, world, hosts):
        for kind, extra in [
            ("http", {"url": "https://api.example.com/x"}),
            ("builtin", {"builtin": "http_request"}),
        ]:
            response = self.post(
                api,
                world,
                "tools",
                {"slug": f"t-{kind}", "name": "T", "kind": kind, "allowed_hosts": hosts, **extra},
            )
            body = assert_error_shape(response, 400, attr="allowed_hosts")
            assert "host" in body["errors"][0]["detail"]

    @pytest.mark.parametrize(
        "auth_format",
        ["{0.__class__.__mro__}", "Bearer {1}", "{secret} {}", "Token", "{x}", "Bearer {{}}"],
    )
    def test_auth_format_other_than_one_placeholder_is_a_400(self, api, world, auth_format):
        make_secret(world.acme, name="k", value="agent-key-value-1234")
        response = self.post(
            api,
            world,
            "agents",
            {
                "slug": "ext",
                "name": "Ext",
                "kind": "http",
                "config": {
                    "url": "https://agent.example.com/run",
                    "auth_secret": "k",
                    "auth_format": auth_format,
                },
            },
        )
        body = assert_error_shape(response, 400, attr="config.auth_format")
        assert "{}" in body["errors"][0]["detail"]


@pytest.mark.parametrize(
    ("auth_format", "sent"),
    [
        ("Bearer {}", "Bearer s3cr3t"),
        ("Token {secret}", "Token s3cr3t"),
        # Stored before validation existed: rendered literally, never as a format string.
        ("{0.__class__.__mro__} {}", "{0.__class__.__mro__} s3cr3t"),
        ("{1}", "{1}"),
    ],
)
def test_auth_format_is_a_plain_substitution(auth_format, sent):
    assert auth_value(auth_format, "s3cr3t") == sent


# Models answers without a "data" list ------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body", [{"object": "list"}, {"data": None}, {"data": "gpt"}, {"data": {"id": "m"}}]
)
@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (ProviderKind.OPENAI, "not with an OpenAI-compatible models response"),
        (ProviderKind.ANTHROPIC, "not with an Anthropic models response"),
    ],
)
def test_a_models_answer_without_a_data_list_is_a_plain_failure(
    tenant, upstream, body, kind, words, api, world
):
    upstream.routes["/v1/models"] = (200, {}, body, None)
    base = url_for("127.0.0.1", upstream.port, "/v1" if kind == ProviderKind.OPENAI else "")
    ProviderConnection.objects.unscoped().create(
        tenant=world.acme,
        slug="p",
        name="P",
        kind=kind,
        base_url=base,
        api_key=KEY,
        timeout_seconds=5,
    )

    response = api(world.alice, world.acme).post("/api/v1/t/acme/providers/p/test/")

    assert response.status_code == 200, response.content[:300]
    assert response.json()["ok"] is False
    assert words in response.json()["message"]
