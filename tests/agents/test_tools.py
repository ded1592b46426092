"""Tool execution: built-ins, HTTP tools against a loopback server, MCP over HTTP and stdio.

Nothing is mocked: HTTP tools talk to a real ``ThreadingHTTPServer`` on 127.0.0.1 and MCP
tools to ``tests/agents/mcp_test_server.py`` started as a subprocess (streamable HTTP) or
spawned by the official client (stdio).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from agents.choices import McpTransport, Risk, ToolKind
from agents.models import KnowledgeDocument, McpServer, Secret, Ticket, Tool
from agents.tools.base import (
    ToolContext,
    ToolError,
    check_host_allowed,
    execute_tool,
    make_idempotency_key,
    validate_schema,
)
from agents.tools.builtin import BUILTINS
from agents.tools.mcp_client import call, discover
from agents.tools.mcp_services import mcp_server_discover
from controlplane.audit.models import AuditEvent
from controlplane.choices import Status
from controlplane.context import tenant_context
from tests.factories import TenantFactory

MCP_SERVER_SCRIPT = Path(__file__).with_name("mcp_test_server.py")
MCP_API_KEY = "mcp-test-key-7f3a9c"
HTTP_SECRET = "s3cr3t-bearer-value-91b2"

# Loopback HTTP server -----------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """Answers by path and records every request it receives on ``server.requests``."""

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _record(self) -> dict:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        entry = {
            "method": self.command,
            "path": parts.path,
            "query": parse_qs(parts.query),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": json.loads(raw) if raw else None,
        }
        self.server.requests.append(entry)
        return entry

    def _send(self, status: int, body: bytes, content_type: str, extra=()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _answer(self) -> None:
        entry = self._record()
        path = entry["path"]
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self._send(code, f"status {code} from upstream".encode(), "text/plain")
        elif path == "/slow":
            time.sleep(3)
            self._send(200, b'{"late": true}', "application/json")
        elif path == "/text":
            self._send(200, b"hello plain", "text/plain; charset=utf-8")
        elif path == "/list":
            self._send(200, b"[1, 2, 3]", "application/json")
        elif path == "/redirect":
            target = entry["query"]["to"][0]
            self._send(302, b"", "text/plain", [("Location", target)])
        else:
            self._send(200, json.dumps(entry).encode(), "application/json")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.daemon_threads = True
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def http(upstream):
    """The loopback server with an empty request log; ``http.base`` is its URL."""
    upstream.requests.clear()
    upstream.base = f"http://127.0.0.1:{upstream.server_address[1]}"
    return upstream


# MCP server over streamable HTTP -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the MCP test server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the MCP test server did not start listening")


@pytest.fixture(scope="module")
def mcp_http_url():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(MCP_SERVER_SCRIPT), "http", str(port)],
        env={**os.environ, "MCP_TEST_API_KEY": MCP_API_KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Helpers -----------------------------------------------------------------------------------


@pytest.fixture
def tenant(db):
    return TenantFactory(slug="acme")


@pytest.fixture
def other_tenant(db):
    return TenantFactory(slug="globex")


def context_for(tenant, key: str | None = None) -> ToolContext:
    return ToolContext(tenant=tenant, idempotency_key=key, caller="agent:support")


def builtin_tool(tenant, name: str, **fields) -> Tool:
    spec = BUILTINS[name]
    values = {
        "slug": name.replace("_", "-"),
        "name": name,
        "kind": ToolKind.BUILTIN,
        "builtin": name,
        "input_schema": spec.input_schema,
        "output_schema": spec.output_schema,
        "risk": spec.risk,
        **fields,
    }
    return Tool.objects.unscoped().create(tenant=tenant, **values)


def http_tool(tenant, url: str, **fields) -> Tool:
    values = {
        "slug": "partner-api",
        "name": "Partner API",
        "kind": ToolKind.HTTP,
        "url": url,
        "method": "GET",
        "allowed_hosts": ["127.0.0.1"],
        "timeout_seconds": 5,
        **fields,
    }
    return Tool.objects.unscoped().create(tenant=tenant, **values)


def run(tool: Tool, arguments: dict, key: str | None = None) -> dict:
    return execute_tool(tool, arguments, context_for(tool.tenant, key))


def failure(tool: Tool, arguments: dict, key: str | None = None) -> ToolError:
    with pytest.raises(ToolError) as caught:
        run(tool, arguments, key)
    return caught.value


def audit_actions(tenant, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.for_tenant(tenant).filter(action=action).order_by("seq"))


# Calculator --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("(2 + 3) * 4", 20),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("10 % 4", 2),
        ("-2 ** 2", -4),
        ("2 ** 10 - 24", 1000),
        ("1.5e3 + +1", 1501.0),
        ("((1))", 1),
    ],
)
def test_calculator_evaluates_arithmetic(tenant, expression, expected):
    result = run(builtin_tool(tenant, "calculator"), {"expression": expression})

    assert result == {"result": expected}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("__import__('os').system('true')", "function calls"),
        ("x + 1", "names such as 'x'"),
        ("abs(-1)", "function calls"),
        ("(1).real", "attributes"),
        ("2 ** 100000", "Exponents are limited"),
        ("9 ** 9999", "more than 1000 digits"),
        ("10 ** 999 * 10 ** 999", "more than 1000 digits"),
        ("1 / 0", "Division by zero"),
        ("'a' * 3", "Only numbers"),
        ("True + 1", "Only numbers"),
        ("[1, 2]", "found List"),
        ("1 < 2", "comparisons"),
        ("1 +", "not valid arithmetic"),
        ("1e308 * 10", "too large"),
        ("+".join(["1"] * 150), "too long"),
    ],
)
def test_calculator_refuses_anything_but_bounded_arithmetic(tenant, expression, fragment):
    error = failure(builtin_tool(tenant, "calculator"), {"expression": expression})

    assert error.code == "invalid_arguments"
    assert not error.retryable
    assert fragment in error.message


# json_extract ------------------------------------------------------------------------------

DOCUMENT = {
    "items": [{"name": "widget", "price": 1.5}, {"name": "gadget", "price": 2.5}],
    "meta": {"tags": ["new", "sale"], "count": 2, "odd.key": "dotted"},
}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("items[0].name", "widget"),
        ("items[-1].price", 2.5),
        ("items.1.name", "gadget"),
        ("meta.tags[1]", "sale"),
        ("$.meta.count", 2),
        ('meta["odd.key"]', "dotted"),
        ("items[*].name", ["widget", "gadget"]),
        ("meta", DOCUMENT["meta"]),
    ],
)
def test_json_extract_follows_paths(tenant, path, value):
    result = run(builtin_tool(tenant, "json_extract"), {"document": DOCUMENT, "path": path})

    assert result == {"found": True, "value": value}


@pytest.mark.django_db
def test_json_extract_reports_missing_paths_and_parses_json_text(tenant):
    tool = builtin_tool(tenant, "json_extract")

    missing = run(tool, {"document": DOCUMENT, "path": "items[5].name", "default": "none"})
    from_text = run(tool, {"document": json.dumps(DOCUMENT), "path": "items[1].name"})

    assert missing == {"found": False, "value": "none"}
    assert from_text == {"found": True, "value": "gadget"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"document": DOCUMENT, "path": "items[0"}, "cannot be read at position 6"),
        ({"document": "not json {", "path": "a"}, "not JSON text"),
    ],
)
def test_json_extract_rejects_bad_paths_and_documents(tenant, arguments, fragment):
    error = failure(builtin_tool(tenant, "json_extract"), arguments)

    assert error.code == "invalid_arguments"
    assert fragment in error.message


# kb_search ---------------------------------------------------------------------------------


def seed_documents(tenant, other_tenant) -> dict[str, KnowledgeDocument]:
    docs = {}
    with tenant_context(tenant):
        for key, collection, title, content in [
            (
                "refunds",
                "support",
                "Refund policy",
                "Refunds are issued within 14 days. To request a refund, open a ticket with "
                "your order number. A refund goes back to the original payment method.",
            ),
            (
                "shipping",
                "support",
                "Shipping times",
                "Orders ship in 2 days. Late deliveries may qualify for a refund of the "
                "shipping fee. Tracking numbers are emailed when the parcel leaves.",
            ),
            (
                "passwords",
                "support",
                "Resetting your password",
                "Use the forgotten password link on the sign-in page to reset it.",
            ),
            (
                "internal",
                "internal",
                "Refund approvals (staff)",
                "Refund requests above 500 EUR need a manager's refund approval.",
            ),
        ]:
            docs[key] = KnowledgeDocument.objects.create(
                tenant=tenant, collection=collection, title=title, content=content
            )
    KnowledgeDocument.objects.unscoped().create(
        tenant=other_tenant,
        collection="support",
        title="Refund refund refund",
        content="refund " * 50,
    )
    return docs


@pytest.mark.django_db
def test_kb_search_ranks_the_tenants_documents_by_term_frequency(tenant, other_tenant):
    docs = seed_documents(tenant, other_tenant)
    tool = builtin_tool(tenant, "kb_search")

    result = run(tool, {"query": "How do I get a refund?", "collection": "support"})

    titles = [r["title"] for r in result["results"]]
    assert titles == ["Refund policy", "Shipping times"]
    assert result["total"] == 2
    scores = [r["score"] for r in result["results"]]
    assert scores[0] > scores[1] > 0
    assert result["results"][0]["id"] == docs["refunds"].pk
    assert "refund" in result["results"][0]["snippet"].lower()


@pytest.mark.django_db
def test_kb_search_without_collection_searches_all_and_honours_top_k(tenant, other_tenant):
    seed_documents(tenant, other_tenant)
    tool = builtin_tool(tenant, "kb_search")

    everything = run(tool, {"query": "refund approval"})
    top_one = run(tool, {"query": "refund approval", "top_k": 1})
    nothing = run(tool, {"query": "kangaroo"})

    assert everything["results"][0]["title"] == "Refund approvals (staff)"
    assert {r["title"] for r in everything["results"]} == {
        "Refund approvals (staff)",
        "Refund policy",
        "Shipping times",
    }
    assert "Refund refund refund" not in [r["title"] for r in everything["results"]]
    assert [r["title"] for r in top_one["results"]] == ["Refund approvals (staff)"]
    assert top_one["total"] == 3
    assert nothing == {"results": [], "total": 0}


# Tickets -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ticket_create_with_the_same_idempotency_key_creates_one_ticket(tenant):
    tool = builtin_tool(tenant, "ticket_create")
    key = make_idempotency_key(41, "triage", 0)
    arguments = {"title": "Printer on fire", "priority": "urgent", "customer": "ACME"}

    first = run(tool, arguments, key)
    second = run(tool, arguments, key)

    assert first["created"] is True
    assert second["created"] is False
    assert second["ticket"] == first["ticket"]
    rows = list(Ticket.objects.for_tenant(tenant))
    assert len(rows) == 1
    assert rows[0].idempotency_key == key
    assert rows[0].priority == "urgent"
    events = audit_actions(tenant, "ticket.create")
    assert len(events) == 1
    assert events[0].target_id == str(rows[0].pk)
    assert events[0].metadata["idempotency_key"] == key
    assert events[0].metadata["caller"] == "agent:support"
    assert events[0].after["title"] == "Printer on fire"


@pytest.mark.django_db
def test_ticket_numbers_count_up_per_tenant(tenant, other_tenant):
    mine = builtin_tool(tenant, "ticket_create")
    theirs = builtin_tool(other_tenant, "ticket_create")

    numbers = [run(mine, {"title": f"Ticket {i}"})["ticket"]["number"] for i in range(3)]
    their_number = run(theirs, {"title": "Elsewhere"})["ticket"]["number"]

    assert numbers == [1, 2, 3]
    assert their_number == 1
    assert len(audit_actions(tenant, "ticket.create")) == 3
    assert len(audit_actions(other_tenant, "ticket.create")) == 1


@pytest.mark.django_db(transaction=True)
def test_many_tickets_opened_at_once_all_get_a_number(transactional_db):
    """40 steps opening tickets at the same moment (threads, each its own connection and
    transaction): every one succeeds with its own number. Before: each took the largest
    number + 1 and retried on a clash; under this load some ran out of retries ("Could not
    allocate a ticket number", 27 of 200 steps in the in-flight kill test)."""
    from django.db import connection

    tenant = TenantFactory(slug="busy")
    tool = builtin_tool(tenant, "ticket_create")
    start = threading.Barrier(40)

    def open_one(i: int) -> int:
        try:
            start.wait()
            return run(tool, {"title": f"Ticket {i}"}, key=f"busy-{i}")["ticket"]["number"]
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
        numbers = sorted(pool.map(open_one, range(40)))

    assert numbers == list(range(1, 41))
    assert len(audit_actions(tenant, "ticket.create")) == 40


@pytest.mark.django_db
def test_ticket_update_changes_status_and_adds_a_note_once_per_key(tenant):
    create = builtin_tool(tenant, "ticket_create")
    update = builtin_tool(tenant, "ticket_update")
    number = run(create, {"title": "Refund please"})["ticket"]["number"]
    key = make_idempotency_key(7, "resolve", 2)
    arguments = {"number": number, "status": "resolved", "note": "Refund sent."}

    first = run(update, arguments, key)
    replay = run(update, arguments, key)

    assert first["changed"] == ["status", "notes"]
    assert first["replayed"] is False
    assert replay["replayed"] is True
    assert replay["changed"] == []
    ticket = Ticket.objects.for_tenant(tenant).get(number=number)
    assert ticket.status == "resolved"
    assert [n["text"] for n in ticket.data["notes"]] == ["Refund sent."]
    assert ticket.data["notes"][0]["by"] == "agent:support"
    events = audit_actions(tenant, "ticket.update")
    assert len(events) == 1
    assert events[0].before["status"] == "open"
    assert events[0].after["status"] == "resolved"


@pytest.mark.django_db
def test_ticket_update_without_a_key_adds_each_note(tenant):
    create = builtin_tool(tenant, "ticket_create")
    update = builtin_tool(tenant, "ticket_update")
    number = run(create, {"title": "Two notes"})["ticket"]["number"]

    run(update, {"number": number, "note": "first"})
    result = run(update, {"number": number, "note": "second", "priority": "high"})

    assert [n["text"] for n in result["ticket"]["data"]["notes"]] == ["first", "second"]
    assert result["ticket"]["priority"] == "high"
    assert len(audit_actions(tenant, "ticket.update")) == 2


@pytest.mark.django_db
def test_ticket_update_of_an_unknown_or_foreign_ticket_is_not_found(tenant, other_tenant):
    run(builtin_tool(other_tenant, "ticket_create"), {"title": "Theirs"})
    update = builtin_tool(tenant, "ticket_update")

    error = failure(update, {"number": 1, "status": "closed"})

    assert error.code == "not_found"
    assert "#1" in error.message
    assert Ticket.objects.for_tenant(other_tenant).get().status == "open"


@pytest.mark.django_db
def test_ticket_update_needs_something_to_change(tenant):
    error = failure(builtin_tool(tenant, "ticket_update"), {"number": 1})

    assert error.code == "invalid_arguments"
    assert error.details["errors"][0]["path"] == "$"


# Schemas -----------------------------------------------------------------------------------

ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "customer": {
            "type": "object",
            "properties": {"email": {"type": "string", "format": "email"}},
            "required": ["email"],
        },
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"qty": {"type": "integer", "minimum": 1}},
            },
        },
    },
    "required": ["customer", "items"],
}


@pytest.mark.django_db
def test_input_schema_violations_are_all_reported_with_paths_before_any_call(tenant, http):
    tool = http_tool(tenant, f"{http.base}/echo", method="POST", input_schema=ORDER_SCHEMA)

    error = failure(tool, {"customer": {}, "items": [{"qty": 0}, {"qty": "two"}]})

    assert error.code == "invalid_arguments"
    assert not error.retryable
    paths = [e["path"] for e in error.details["errors"]]
    assert paths == ["$.customer", "$.items[0].qty", "$.items[1].qty"]
    assert "$.customer: 'email' is a required property" in error.message
    assert "$.items[0].qty: 0 is less than the minimum of 1" in error.message
    assert "$.items[1].qty: 'two' is not of type 'integer'" in error.message
    assert http.requests == []


@pytest.mark.django_db
def test_arguments_must_be_an_object(tenant):
    error = failure(builtin_tool(tenant, "calculator"), ["1 + 1"])

    assert error.code == "invalid_arguments"


@pytest.mark.django_db
def test_output_schema_violations_are_reported_with_paths(tenant, http):
    schema = {
        "type": "object",
        "properties": {"method": {"type": "integer"}, "status_text": {"type": "string"}},
        "required": ["status_text"],
    }
    tool = http_tool(tenant, f"{http.base}/echo", output_schema=schema)

    error = failure(tool, {})

    assert error.code == "invalid_output"
    assert [e["path"] for e in error.details["errors"]] == ["$", "$.method"]
    assert "'status_text' is a required property" in error.message
    assert "$.method: 'GET' is not of type 'integer'" in error.message
    assert len(http.requests) == 1


def test_validate_schema_explains_what_is_wrong():
    assert validate_schema({"type": "object", "properties": {"a": {"type": "string"}}}) == []
    assert validate_schema({}) == []

    problems = validate_schema({"type": "strin", "properties": {"a": {"minimum": "one"}}})

    assert any(p.startswith("$.properties.a.minimum: ") for p in problems)
    assert any(p.startswith("$.type: ") for p in problems)
    assert validate_schema(["not", "a", "schema"]) == [
        "A JSON Schema must be a JSON object ({} accepts anything)."
    ]
    assert validate_schema({"type": "string"}, require_object=True)[0].startswith("$.type:")
    assert validate_schema({"type": "string"}) == []


@pytest.mark.django_db
def test_disabled_tools_and_other_tenants_tools_are_refused(tenant, other_tenant):
    disabled = builtin_tool(tenant, "calculator", status=Status.DISABLED)
    foreign = builtin_tool(other_tenant, "calculator")

    disabled_error = failure(disabled, {"expression": "1"})
    with pytest.raises(ToolError) as foreign_error:
        execute_tool(foreign, {"expression": "1"}, context_for(tenant))

    assert disabled_error.code == "disabled"
    assert foreign_error.value.code == "not_found"


@pytest.mark.django_db
def test_a_missing_builtin_is_not_found(tenant):
    tool = builtin_tool(tenant, "calculator", builtin="teleport", slug="teleport")

    error = failure(tool, {"expression": "1"})

    assert error.code == "not_found"
    assert "teleport" in error.message


# Allowed hosts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example.com/v1", ["api.example.com"]),
        ("https://API.Example.com./v1", ["api.example.com"]),
        ("https://a.b.example.com/", ["*.example.com"]),
        ("http://127.0.0.1:8080/x", ["127.0.0.1:8080"]),
        ("http://127.0.0.1:8080/x", ["127.0.0.1"]),
        ("http://[::1]:9000/", ["[::1]"]),
    ],
)
def test_check_host_allowed_accepts(url, allowed):
    assert check_host_allowed(url, allowed)


@pytest.mark.parametrize(
    ("url", "allowed", "fragment"),
    [
        ("https://example.com/", ["*.example.com"], "not in this tool's allowed hosts"),
        ("https://evilexample.com/", ["*.example.com"], "not in this tool's allowed hosts"),
        ("https://api.example.com.evil.net/", ["api.example.com"], "not in this tool's"),
        ("https://api.example.com@evil.net/", ["api.example.com"], "user name or password"),
        ("https://api.example.com\\@evil.net/", ["api.example.com"], "backslashes"),
        ("ftp://api.example.com/", ["api.example.com"], "Only http and https"),
        ("file:///etc/passwd", ["api.example.com"], "Only http and https"),
        ("http://127.0.0.1:8080/", ["127.0.0.1:9090"], "not in this tool's allowed hosts"),
        ("https://api.example.com/", [], "No hosts are allowed"),
        ("https:///nohost", ["api.example.com"], "no host"),
    ],
)
def test_check_host_allowed_refuses(url, allowed, fragment):
    with pytest.raises(ToolError) as caught:
        check_host_allowed(url, allowed)

    assert caught.value.code == "host_not_allowed"
    assert fragment in caught.value.message


# HTTP tools --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_http_tool_fills_placeholders_and_sends_the_rest_as_query(tenant, http):
    tool = http_tool(tenant, f"{http.base}/echo/orders/{{order_id}}")

    result = run(tool, {"order_id": "A/7 b", "expand": True, "fields": ["id", "total"]})

    assert result["method"] == "GET"
    assert result["path"] == "/echo/orders/A%2F7%20b"
    assert result["query"] == {"expand": ["true"], "fields": ["id", "total"]}
    assert http.requests[0]["body"] is None


@pytest.mark.django_db
def test_http_tool_keeps_secret_headers_out_of_results_and_logs(tenant, http, caplog):
    caplog.set_level(logging.DEBUG)
    tool = http_tool(
        tenant,
        f"{http.base}/echo/tickets",
        method="POST",
        headers={"X-Plain": "visible"},
        secret_headers={"Authorization": f"Bearer {HTTP_SECRET}"},
    )
    key = make_idempotency_key(12, "notify", 0)

    result = run(tool, {"subject": "hello", "count": 2}, key)

    received = http.requests[0]
    assert received["method"] == "POST"
    assert received["headers"]["authorization"] == f"Bearer {HTTP_SECRET}"
    assert received["headers"]["x-plain"] == "visible"
    assert received["headers"]["idempotency-key"] == key
    assert received["body"] == {"subject": "hello", "count": 2}
    assert HTTP_SECRET not in json.dumps(result)
    assert result["headers"]["authorization"] == "[redacted]"
    assert result["headers"]["x-plain"] == "visible"
    assert "/echo/tickets -> 200" in caplog.text
    assert HTTP_SECRET not in caplog.text


@pytest.mark.django_db
def test_http_tool_resolves_secret_references_in_headers(tenant, http):
    with tenant_context(tenant):
        Secret.objects.create(tenant=tenant, name="partner-key", value="partner-k3y-value")
    tool = http_tool(tenant, f"{http.base}/echo", headers={"X-Api-Key": "${secret:partner-key}"})
    missing = http_tool(
        tenant, f"{http.base}/echo", slug="other", headers={"X-Api-Key": "${secret:nope}"}
    )

    result = run(tool, {})
    error = failure(missing, {})

    assert http.requests[0]["headers"]["x-api-key"] == "partner-k3y-value"
    assert "partner-k3y-value" not in json.dumps(result)
    assert error.code == "not_found"
    assert "'nope'" in error.message


@pytest.mark.django_db
def test_http_tool_refuses_hosts_outside_the_allow_list_before_any_request(tenant, http):
    port = http.server_address[1]
    tool = http_tool(tenant, f"http://localhost:{port}/echo", allowed_hosts=["127.0.0.1"])

    error = failure(tool, {})

    assert error.code == "host_not_allowed"
    assert "localhost" in error.message
    assert http.requests == []


@pytest.mark.django_db
def test_http_tool_checks_redirect_targets_too(tenant, http):
    port = http.server_address[1]
    leaves = http_tool(
        tenant, f"{http.base}/redirect?to=http://localhost:{port}/echo", slug="leaves"
    )
    stays = http_tool(tenant, f"{http.base}/redirect?to=/echo/landed", slug="stays")

    error = failure(leaves, {})
    landed = run(stays, {})

    assert error.code == "host_not_allowed"
    assert [r["path"] for r in http.requests] == ["/redirect", "/redirect", "/echo/landed"]
    assert landed["path"] == "/echo/landed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "phrase", "retryable"),
    [
        (500, "Internal Server Error", True),
        (503, "Service Unavailable", True),
        (429, "Too Many Requests", True),
        (404, "Not Found", False),
    ],
)
def test_http_tool_turns_error_statuses_into_upstream_errors(
    tenant, http, status, phrase, retryable
):
    tool = http_tool(tenant, f"{http.base}/status/{status}")

    error = failure(tool, {})

    assert error.code == "upstream_error"
    assert error.retryable is retryable
    assert error.details == {"status": status}
    assert error.message == f"127.0.0.1 answered HTTP {status} {phrase}."
    # Never the body: an error must not be a way to read what a server answered.
    assert "from upstream" not in error.message


@pytest.mark.django_db
def test_http_tool_times_out(tenant, http):
    tool = http_tool(tenant, f"{http.base}/slow", timeout_seconds=1)
    started = time.monotonic()

    error = failure(tool, {})

    assert error.code == "timeout"
    assert error.retryable is True
    assert time.monotonic() - started < 2.5


@pytest.mark.django_db
def test_http_tool_wraps_text_and_non_object_json(tenant, http):
    text = http_tool(tenant, f"{http.base}/text", slug="text")
    listing = http_tool(tenant, f"{http.base}/list", slug="list")

    assert run(text, {}) == {"status": 200, "text": "hello plain"}
    assert run(listing, {}) == {"result": [1, 2, 3]}


@pytest.mark.django_db
def test_http_tool_reports_an_unreachable_host(tenant):
    port = free_port()
    tool = http_tool(tenant, f"http://127.0.0.1:{port}/", timeout_seconds=3)

    error = failure(tool, {})

    assert error.code == "upstream_error"
    assert error.retryable is True
    assert error.message == (
        "No HTTP answer from 127.0.0.1: the connection failed, was closed or timed out."
    )


@pytest.mark.django_db
def test_http_request_builtin_gets_and_posts_to_allowed_hosts(tenant, http):
    tool = builtin_tool(
        tenant,
        "http_request",
        allowed_hosts=["127.0.0.1"],
        secret_headers={"X-Token": HTTP_SECRET},
    )

    got = run(tool, {"url": f"{http.base}/echo/a", "query": {"q": "refund", "n": 3}})
    posted = run(
        tool,
        {
            "url": f"{http.base}/echo/b",
            "method": "POST",
            "body": {"ok": True},
            "headers": {"X-Token": "agent-supplied", "X-Trace": "t1"},
        },
        key="k-1",
    )
    refused = failure(tool, {"url": "https://example.com/"})

    assert got["status"] == 200
    assert got["json"]["query"] == {"q": ["refund"], "n": ["3"]}
    assert posted["json"]["body"] == {"ok": True}
    assert http.requests[1]["headers"]["x-token"] == HTTP_SECRET
    assert http.requests[1]["headers"]["x-trace"] == "t1"
    assert http.requests[1]["headers"]["idempotency-key"] == "k-1"
    assert HTTP_SECRET not in json.dumps(posted)
    assert refused.code == "host_not_allowed"
    assert len(http.requests) == 2


# MCP ---------------------------------------------------------------------------------------


def http_server(tenant, url: str, **fields) -> McpServer:
    values = {
        "slug": "remote",
        "name": "Remote MCP",
        "transport": McpTransport.HTTP,
        "url": url,
        "secret_headers": {"X-Api-Key": MCP_API_KEY},
        "timeout_seconds": 15,
        **fields,
    }
    with tenant_context(tenant):
        return McpServer.objects.create(tenant=tenant, **values)


@pytest.fixture(autouse=True)
def _stdio_allowed(settings):
    """This module's stdio servers are the test interpreter and a missing binary."""
    settings.MCP_STDIO_COMMANDS = [sys.executable, "/nonexistent/mcp-server"]


def stdio_server(tenant, env: dict | None = None, **fields) -> McpServer:
    values = {
        "slug": "local",
        "name": "Local MCP",
        "transport": McpTransport.STDIO,
        "command": sys.executable,
        "args": [str(MCP_SERVER_SCRIPT), "stdio"],
        "secret_env": env or {},
        "timeout_seconds": 20,
        **fields,
    }
    with tenant_context(tenant):
        return McpServer.objects.create(tenant=tenant, **values)


def discover_tools(tenant, server: McpServer) -> dict[str, Tool]:
    with tenant_context(tenant):
        mcp_server_discover(server=server)
        return {t.mcp_tool_name: t for t in Tool.objects.filter(mcp_server=server)}


@pytest.mark.django_db
def test_discover_over_http_registers_tools_with_schemas_and_risk(tenant, mcp_http_url):
    server = http_server(tenant, mcp_http_url)

    tools = discover_tools(tenant, server)

    assert set(tools) == {"add", "echo", "fail", "wipe", "slow", "has_env", "whoami"}
    add, echo, wipe = tools["add"], tools["echo"], tools["wipe"]
    assert add.slug == "remote-add"
    assert tools["has_env"].slug == "remote-has-env"
    assert add.kind == ToolKind.MCP
    assert add.name == "Add numbers"
    assert add.description == "Add two numbers."
    assert add.input_schema["required"] == ["a", "b"]
    assert add.input_schema["properties"]["a"]["type"] == "number"
    assert add.output_schema["properties"]["sum"]["type"] == "number"
    assert add.risk == Risk.READ
    assert wipe.risk == Risk.DESTRUCTIVE
    assert echo.risk == Risk.WRITE
    assert all(t.status == Status.ACTIVE for t in tools.values())
    server.refresh_from_db()
    assert server.last_discovered_at is not None
    assert server.last_error == ""
    events = audit_actions(tenant, "mcp_server.discover")
    assert len(events) == 1
    assert events[0].metadata["created"] == 7
    assert events[0].metadata["offered"] == 7


@pytest.mark.django_db
def test_mcp_tools_are_called_through_the_client_over_http(tenant, mcp_http_url):
    tools = discover_tools(tenant, http_server(tenant, mcp_http_url))

    added = run(tools["add"], {"a": 2, "b": 3.5})
    echoed = run(tools["echo"], {"text": "hi there"})
    identity = run(tools["whoami"], {}, key="run-1-step-x-call-3")
    error = failure(tools["fail"], {"reason": "printer on fire"})
    bad = failure(tools["add"], {"a": "two"})

    assert added == {"sum": 5.5}
    assert echoed == {"result": "hi there"}
    assert identity == {"result": "run-1-step-x-call-3"}
    assert error.code == "upstream_error"
    assert error.retryable is False
    assert "printer on fire" in error.message
    assert bad.code == "invalid_arguments"
    assert {e["path"] for e in bad.details["errors"]} == {"$", "$.a"}


@pytest.mark.django_db
def test_mcp_http_with_wrong_credentials_says_so(tenant, mcp_http_url):
    server = http_server(tenant, mcp_http_url, secret_headers={"X-Api-Key": "wrong-key-000"})

    with tenant_context(tenant), pytest.raises(ToolError) as caught:
        mcp_server_discover(server=server)

    assert "refused the credentials (HTTP 401)" in caught.value.message
    assert "wrong-key-000" not in caught.value.message
    server.refresh_from_db()
    assert "HTTP 401" in server.last_error
    assert server.last_discovered_at is None
    with tenant_context(tenant):
        assert not Tool.objects.filter(mcp_server=server).exists()
    assert audit_actions(tenant, "mcp_server.discover")[0].metadata["ok"] is False


@pytest.mark.django_db
def test_mcp_unreachable_url_is_a_clear_error(tenant):
    url = f"http://127.0.0.1:{free_port()}/mcp"
    server = http_server(tenant, url, timeout_seconds=5)

    with tenant_context(tenant), pytest.raises(ToolError) as caught:
        mcp_server_discover(server=server)

    assert caught.value.message == (
        f"No HTTP answer from the MCP server at {url}: the connection failed, was closed or "
        "timed out."
    )
    assert caught.value.retryable is True
    server.refresh_from_db()
    assert server.last_error == caught.value.message


@pytest.mark.django_db
def test_discover_and_call_over_stdio_with_secret_env(tenant):
    server = stdio_server(tenant, env={"MCP_TEST_SECRET": "stdio-secret-value"})

    tools = discover_tools(tenant, server)
    added = run(tools["add"], {"a": 1, "b": 2})
    env = run(tools["has_env"], {"name": "MCP_TEST_SECRET"})
    unset = run(tools["has_env"], {"name": "MCP_TEST_NOT_SET"})

    assert tools["wipe"].slug == "local-wipe"
    assert tools["wipe"].risk == Risk.DESTRUCTIVE
    assert added == {"sum": 3.0}
    assert env == {"set": True}
    assert unset == {"set": False}


@pytest.mark.django_db
def test_rediscovery_disables_tools_no_longer_offered_and_brings_them_back(tenant):
    server = stdio_server(tenant)
    first = discover_tools(tenant, server)
    with tenant_context(tenant):
        first["add"].risk = Risk.DESTRUCTIVE  # an administrator raised it
        first["add"].save(update_fields=["risk"])
        server.secret_env = {"MCP_TEST_HIDE": "echo,slow"}
        server.save(update_fields=["secret_env"])

    second = discover_tools(tenant, server)
    hidden_error = failure(second["echo"], {"text": "x"})
    with tenant_context(tenant):
        server.secret_env = {}
        server.save(update_fields=["secret_env"])
    third = discover_tools(tenant, server)

    assert second["echo"].status == Status.DISABLED
    assert second["slow"].status == Status.DISABLED
    assert second["add"].status == Status.ACTIVE
    assert second["add"].risk == Risk.DESTRUCTIVE
    assert second["echo"].pk == first["echo"].pk
    assert hidden_error.code == "disabled"
    assert third["echo"].status == Status.ACTIVE
    events = audit_actions(tenant, "mcp_server.discover")
    assert [e.metadata["disabled"] for e in events] == [0, 2, 0]
    assert [e.metadata["reenabled"] for e in events] == [0, 0, 2]


@pytest.mark.django_db
def test_mcp_stdio_command_that_does_not_exist(tenant):
    server = stdio_server(tenant, command="/nonexistent/mcp-server", args=[])

    with pytest.raises(ToolError) as caught:
        discover(server)

    assert "Could not start the MCP server command '/nonexistent/mcp-server'" in (
        caught.value.message
    )


@pytest.mark.django_db
def test_mcp_stdio_server_that_crashes_reports_what_it_wrote_without_secrets(tenant):
    crash = (
        "import os, sys; "
        "sys.stderr.write('fatal: bad token ' + os.environ['MCP_TOKEN'] + '\\n'); sys.exit(3)"
    )
    server = stdio_server(tenant, env={"MCP_TOKEN": "tok-abcdef-123"}, args=["-c", crash])

    with pytest.raises(ToolError) as caught:
        discover(server)

    message = caught.value.message
    assert "closed the connection before answering" in message
    assert "The server wrote: fatal: bad token [redacted]" in message
    assert "tok-abcdef-123" not in message
    assert caught.value.retryable is False


@pytest.mark.django_db
def test_mcp_call_times_out(tenant):
    server = stdio_server(tenant)
    started = time.monotonic()

    with pytest.raises(ToolError) as caught:
        call(server, "slow", {"seconds": 10}, timeout=2)

    assert caught.value.code == "timeout"
    assert caught.value.retryable is True
    assert "did not answer within 2 seconds" in caught.value.message
    assert time.monotonic() - started < 9


@pytest.mark.django_db
def test_discovery_outside_the_tenant_context_is_refused(tenant):
    server = stdio_server(tenant)

    with pytest.raises(RuntimeError, match="tenant context"):
        mcp_server_discover(server=server)


def test_stdio_servers_are_refused_unless_their_executable_is_listed(tenant, settings):
    from django.core.exceptions import ValidationError

    from agents.services.mcp_servers import mcp_server_create

    def create(command):
        with tenant_context(tenant):
            return mcp_server_create(
                tenant=tenant, slug="s", name="S", transport="stdio", command=command
            )

    settings.MCP_STDIO_COMMANDS = []
    with pytest.raises(ValidationError, match="stdio MCP servers are disabled"):
        create("/bin/sh -c 'id'")
    settings.MCP_STDIO_COMMANDS = ["/usr/bin/mcp-files"]
    with pytest.raises(ValidationError, match="'/bin/sh' is not an allowed stdio MCP command"):
        create("/bin/sh -c 'id'")
    assert create("/usr/bin/mcp-files --root /srv").command.startswith("/usr/bin/mcp-files")


def test_a_stdio_server_delisted_after_registration_is_not_started(tenant, settings):
    server = stdio_server(tenant)
    settings.MCP_STDIO_COMMANDS = []
    with pytest.raises(ToolError, match="disabled on this installation") as info:
        discover(server)
    assert info.value.code == "forbidden"
