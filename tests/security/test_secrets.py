"""Secrets stay secret end to end (DESIGN.md 4.6): provider keys, tool credentials and tenant
secrets are used where they must be, and appear in nothing the platform shows or stores in
the clear.

One scenario drives every path a secret could leak through: the API and the dashboard create
and show a provider (with a key), a secret, and an HTTP tool (with a secret header and a header
that references the secret); the provider's connection is tested twice (once the upstream
answers 401 and echoes the key back, as OpenAI does, then it answers); a run calls the tool
and then an agent on that provider. The upstream (a loopback server) proves each secret was
really sent. Then every API response, every dashboard page, every line the log handlers
write, every stored run event, step, run, policy decision and audit row (before, after,
metadata), and the audit export are searched for each secret: none contains one.

And API tokens are only stored hashed: after a token is issued and used, neither the table
nor any other table of the database holds its plaintext or its secret part.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from unittest import mock

import pytest
from django.db import connection, connections
from django.test import Client

from controlplane.api.models import ApiToken
from controlplane.audit.models import AuditEvent
from policies.models import PolicyDecision
from runs.execution import claim, progress, worker
from runs.models import Run, RunEvent, StepRun
from tests.factories import make_token
from tests.runs.loopback import Loopback

PROVIDER_KEY = "NEEDLE-provider-key-5c1e7a"
TOOL_HEADER = "NEEDLE-tool-header-93b0d2"
SECRET_VALUE = "NEEDLE-secret-value-4f8a61"
SECRETS = (PROVIDER_KEY, TOOL_HEADER, SECRET_VALUE)

MODELS = {"object": "list", "data": [{"id": "m-needle", "object": "model", "created": 1}]}
REFUSED = {
    "error": {
        "message": f"Incorrect API key provided: {PROVIDER_KEY}.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "m-needle",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Customer 42 is Dana."},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
}


@pytest.fixture
def upstream():
    server = Loopback()
    server.script["/v1/models"] = [(401, REFUSED, 0), (200, MODELS, 0)]
    server.script["/v1/chat/completions"] = [(200, COMPLETION, 0)]
    server.script["/crm/lookup"] = [(200, {"customer": 42, "name": "Dana"}, 0)]
    yield server
    server.close()


@pytest.fixture
def log_output():
    """What the configured log handlers write (their filters applied), at DEBUG and above."""
    root = logging.getLogger()
    stream = io.StringIO()
    handlers = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    handlers = [h for h in handlers if type(h).__module__.startswith("logging")]
    assert handlers, "the root logger has no stream handler to watch"
    previous = [h.setStream(stream) for h in handlers]
    level = root.level
    root.setLevel(logging.DEBUG)
    yield stream
    root.setLevel(level)
    for handler, old in zip(handlers, previous, strict=True):
        handler.setStream(old)


@pytest.fixture
def step_threads():
    """The engine's step threads, closed afterwards with their database connections (else the
    test database could not be dropped at the end of the session)."""
    yield
    pool = claim._pool
    if pool is None:
        return
    executor = pool[1]
    threads = executor._max_workers
    barrier = threading.Barrier(threads)

    def close() -> None:
        barrier.wait(timeout=10)  # one task per thread: each closes its own connection
        connections.close_all()

    for future in [executor.submit(close) for _ in range(threads)]:
        future.result(timeout=15)
    executor.shutdown(wait=True)
    claim._pool = None


def _run_queued_steps(dispatched: mock.Mock) -> None:
    """Execute every step the engine dispatched, in this process (no broker)."""
    done: set[int] = set()
    while True:
        ids = [i for call in dispatched.call_args_list for i in call.args[0] if i not in done]
        if not ids:
            return
        for step_id in ids:
            done.add(step_id)
            worker.execute_step(step_id, "secrets-test")


@pytest.mark.django_db(transaction=True)
def test_secrets_appear_in_no_response_page_log_event_or_audit_row(
    world, upstream, log_output, step_threads
):
    token = make_token(world.acme, world.alice)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    dashboard = Client()
    dashboard.force_login(world.alice)
    shown: list[tuple[str, bytes]] = []

    def call(method: str, url: str, body=None, expect: int = 200):
        kwargs = {"data": json.dumps(body), "content_type": "application/json"} if body else {}
        response = getattr(api, method)(f"/api/v1/t/acme/{url}", **kwargs)
        assert response.status_code == expect, (url, response.status_code, response.content)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        shown.append((f"{method.upper()} {url}", content))
        return json.loads(content) if content and not url.startswith("audit-events/export") else {}

    def page(url: str, data=None):
        response = dashboard.post(url, data) if data else dashboard.get(url)
        assert response.status_code in (200, 302), (url, response.status_code)
        shown.append((f"page {url}", response.content))

    with mock.patch.object(progress, "dispatch") as dispatched:
        call(
            "post",
            "providers/",
            {
                "slug": "llm",
                "name": "LLM",
                "kind": "openai",
                "base_url": upstream.url("/v1"),
                "api_key": PROVIDER_KEY,
                "models": [{"name": "m-needle", "input_per_mtok": 1, "output_per_mtok": 2}],
                "timeout_seconds": 5,
            },
            expect=201,
        )
        call("post", "secrets/", {"name": "crm-key", "value": SECRET_VALUE}, expect=201)
        call(
            "post",
            "tools/",
            {
                "slug": "crm",
                "name": "CRM lookup",
                "kind": "http",
                "url": upstream.url("/crm/lookup"),
                "method": "POST",
                "allowed_hosts": ["127.0.0.1"],
                "risk": "read",
                "headers": {"X-Api-Key": "${secret:crm-key}"},
                "secret_headers": {"Authorization": TOOL_HEADER},
                "input_schema": {"type": "object"},
            },
            expect=201,
        )
        call(
            "post",
            "agents/",
            {
                "slug": "helper",
                "name": "Helper",
                "kind": "llm",
                "config": {"provider": "llm", "model": "m-needle", "system_prompt": "Help."},
            },
            expect=201,
        )
        refused = call("post", "providers/llm/test/")
        assert refused["ok"] is False
        page("/t/acme/providers/llm/", {"op": "test"})  # the dashboard's test, which connects
        call(
            "post",
            "workflows/",
            {
                "slug": "lookup",
                "name": "Lookup",
                "definition": {
                    "input_schema": {"type": "object"},
                    "example_input": {},
                    "steps": [
                        {"id": "find", "type": "tool", "tool": "crm", "arguments": {"id": 42}},
                        {
                            "id": "answer",
                            "type": "agent",
                            "agent": "helper",
                            "needs": ["find"],
                            "input": "Who is {{ steps.find.output.name }}?",
                        },
                    ],
                },
            },
            expect=201,
        )
        run = call("post", "runs/", {"workflow": "lookup", "input": {}}, expect=201)
        _run_queued_steps(dispatched)

    # every secret was really used where it belongs ...
    def sent(path: str) -> dict[str, str]:
        calls = upstream.calls(path)
        assert calls, path
        return {name.lower(): value for name, value in calls[-1]["headers"].items()}

    assert sent("/crm/lookup")["authorization"] == TOOL_HEADER
    assert sent("/crm/lookup")["x-api-key"] == SECRET_VALUE
    assert sent("/v1/models")["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert sent("/v1/chat/completions")["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert Run.objects.unscoped().get(pk=run["id"]).status == "succeeded"

    # ... and is shown nowhere: API, dashboard ...
    for url in (
        "providers/",
        "providers/llm/",
        "secrets/",
        "secrets/crm-key/",
        "tools/",
        "tools/crm/",
        "agents/helper/",
        "agents/helper/versions/",
        "workflows/lookup/",
        "runs/",
        f"runs/{run['id']}/",
        f"runs/{run['id']}/events/",
        "policy-decisions/",
        "audit-events/",
        "audit-events/export/?format=jsonl",
    ):
        call("get", url)
    for url in (
        "/t/acme/",
        "/t/acme/providers/",
        "/t/acme/providers/llm/",
        "/t/acme/providers/llm/edit/",
        "/t/acme/secrets/",
        "/t/acme/secrets/crm-key/",
        "/t/acme/tools/",
        "/t/acme/tools/crm/",
        "/t/acme/tools/crm/edit/",
        "/t/acme/agents/helper/",
        "/t/acme/runs/",
        f"/t/acme/runs/{run['id']}/",
        "/t/acme/policies/decisions/",
        "/t/acme/audit/",
    ):
        page(url)
    # ... nor stored in the clear where people read: events, steps, runs, decisions, audit
    stored = {
        "run events": list(RunEvent.objects.unscoped().values_list("type", "payload")),
        "steps": list(StepRun.objects.unscoped().values_list("input", "output", "error", "state")),
        "runs": list(Run.objects.unscoped().values_list("input", "output", "context")),
        "decisions": list(PolicyDecision.objects.unscoped().values_list("inputs", "reason")),
        "audit": list(
            AuditEvent.objects.unscoped().values_list(
                "action", "target_name", "before", "after", "metadata"
            )
        ),
    }
    assert stored["run events"] and stored["audit"]
    logged = log_output.getvalue()
    assert "/crm/lookup" in logged or "crm" in logged  # the handlers did write this scenario
    for secret in SECRETS:
        for where, content in shown:
            assert secret.encode() not in content, (secret, where)
        for where, rows in stored.items():
            assert secret not in json.dumps(rows, default=str), (secret, where)
        assert secret not in logged, (secret, "log output")


@pytest.mark.django_db
def test_api_tokens_are_stored_only_as_hashes(world, api):
    """The plaintext of an issued (and used) token is in no column of any table."""
    response = api(world.alice, world.acme).post(
        "/api/v1/t/acme/tokens/", {"name": "deploy", "scope": "write"}, format="json"
    )
    assert response.status_code == 201
    plaintext = response.json()["token"]
    secret_part = plaintext.split("_", 2)[2]
    used = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}").get("/api/v1/t/acme/agents/")
    assert used.status_code == 200  # the token works, so its hash is what is stored

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM {ApiToken._meta.db_table} WHERE prefix = %s",
            [response.json()["prefix"]],
        )
        row = cursor.fetchone()
        columns = [c.name for c in cursor.description]
    assert row is not None
    stored = dict(zip(columns, row, strict=True))
    assert len(stored["token_hash"]) == 64 and stored["token_hash"] != secret_part
    text = " ".join(str(v) for v in stored.values())
    assert plaintext not in text and secret_part not in text

    # and nowhere else in the database either (audit rows, sessions, axes, anything)
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        for table in tables:
            cursor.execute(f'SELECT CAST(t AS text) FROM "{table}" t')
            for (value,) in cursor.fetchall():
                assert secret_part not in value, table
