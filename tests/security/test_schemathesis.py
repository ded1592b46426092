"""Schemathesis against the OpenAPI schema the app serves (``/api/v1/schema/``).

Every operation of the schema is called in-process (WSGI, on the test's database connection)
with requests generated from the schema, once with an owner's token and once with a viewer's:
the schema's examples, fuzzed requests (valid and invalid) and, for the owner, schemathesis'
boundary "coverage" cases of valid input (every optional field, each enum value, the limits),
which reach the services. Every response must pass:

* ``not_a_server_error``: no 5xx, whatever the input;
* ``status_code_conformance``, ``content_type_conformance`` and
  ``response_schema_conformance``: the status code is documented for the operation and the
  body matches the documented schema for it (errors included);
* ``ignored_auth``: an operation that answered 2xx with the token refuses the same request
  without it, or with a made-up one.

Path parameters are drawn from the tenant's real objects most of the time (a schemathesis
dictionary per parameter) so that detail routes and their actions are exercised beyond 404,
and from the schema's own patterns otherwise. The tenant is always ``acme``.

Deterministic: a fixed seed, derandomized Hypothesis, no example database. The number of
fuzzed examples per operation is bounded (``SCHEMATHESIS_MAX_EXAMPLES``, default below): the
module takes about a minute and a half on two cores (some 4,000 requests). Set
``SCHEMATHESIS_TIMINGS=1`` (with ``-s``) to see the slowest operations.

Outbound calls are cut off: provider test-connection meets a refused connection at once
(the real error path runs), and MCP discovery answers "unreachable" without starting a
process or opening a socket. Runs stay queued (no broker).

``test_every_tenant_operation_requires_authentication`` separately calls every operation of
the schema without a token: each tenant route answers 401 with ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import json
import os
import re
import time
from unittest import mock

import httpx
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from agents.tools.base import ToolError
from runs.execution import progress
from tests.factories import make_token
from tests.test_tenant_matrix import Objects

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "8"))
SEED = 20261122
STATEFUL_SCENARIOS = int(os.environ.get("SCHEMATHESIS_STATEFUL_SCENARIOS", "15"))
STATEFUL_STEPS = 6
SCHEMA_URL = "/api/v1/schema/?format=json"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
]

# Path parameters drawn from the tenant's objects: (a regex of the operation's path, its
# parameters -> (object kind of tests.test_tenant_matrix.Objects, its URL key)). The first
# entry whose regex matches an operation applies, so nested paths come first.
PATH_OBJECTS = [
    (
        r"/agents/\{slug\}/versions/\{number\}/$",
        {"slug": ("agent", "slug"), "number": ("agent_version", "number")},
    ),
    (
        r"/agents/\{slug\}/memory/\{key\}/$",
        {"slug": ("agent_memory", "slug"), "key": ("agent_memory", "key")},
    ),
    (r"/agents/\{slug\}/", {"slug": ("agent", "slug")}),
    (r"/tools/\{slug\}/", {"slug": ("tool", "slug")}),
    (r"/providers/\{slug\}/", {"slug": ("provider", "slug")}),
    (r"/mcp-servers/\{slug\}/", {"slug": ("mcp_server", "slug")}),
    (r"/secrets/\{name\}/", {"name": ("secret", "name")}),
    (r"/knowledge-documents/\{id\}/", {"id": ("document", "pk")}),
    (r"/tickets/\{number\}/", {"number": ("ticket", "number")}),
    (r"/tool-grants/\{id\}/", {"id": ("tool_grant", "pk")}),
    (r"/workflows/\{slug\}/", {"slug": ("workflow", "slug")}),
    (r"/runs/\{id\}/", {"id": ("run", "pk")}),
    (r"/approvals/\{id\}/", {"id": ("approval", "pk")}),
    (
        r"/policies/\{slug\}/versions/\{number\}/$",
        {"slug": ("policy", "slug"), "number": ("policy_version", "number")},
    ),
    (r"/policies/\{slug\}/", {"slug": ("policy", "slug")}),
    (r"/policy-decisions/\{id\}/", {"id": ("decision", "pk")}),
    (r"/members/\{username\}/", {"username": ("member", "username")}),
    (r"/tokens/\{prefix\}/", {"prefix": ("token", "prefix")}),
    (r"/audit-events/\{seq\}/", {"seq": ("audit_event", "seq")}),
]


class InProcessWSGI:
    """Django's WSGI handler on the test's connection.

    A request's start and end close "old" database connections, which inside the test's
    transaction would close (and break) it; Django's test client suspends that, and so does
    this. The body is read before the end-of-request signal, as a server would.
    """

    def __init__(self):
        self.handler = WSGIHandler()
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            response = self.handler(environ, start_response)
            try:
                content = b"".join(response)
            finally:
                response.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        return [content]


def _refuse_connections(self, request):
    raise httpx.ConnectError("outbound network is disabled in this test", request=request)


def _mcp_unreachable(server):
    raise ToolError(f"MCP server {server.slug} is unreachable in this test.")


@pytest.fixture
def offline():
    with (
        mock.patch.object(progress, "dispatch"),
        mock.patch.object(httpx.HTTPTransport, "handle_request", _refuse_connections),
        mock.patch("agents.tools.mcp_services.discover", _mcp_unreachable),
    ):
        yield


def _config(
    role: str, token: str, dictionaries: dict, operations: list, *, stateful: bool = False
) -> schemathesis.Config:
    # A viewer is refused every write whatever its body, so its run skips the boundary-value
    # ("coverage") cases, which are mostly request bodies, and samples fewer examples.
    owner = role == "owner"
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {token}"},
            "parameters": {"path.tenant": "acme"},
            "dictionaries": dictionaries,
            "operations": operations,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES if owner else max(2, MAX_EXAMPLES // 3),
                "deterministic": True,
                "database": "none",
                "no-shrink": True,
                # Authorization is the token above; a generated session cookie next to it
                # would only make ignored_auth mistake the token's success for the cookie's
                "with-security-parameters": False,
            },
            "phases": {
                # links inferred from the schema (dependency analysis): see the stateful test
                "stateful": {"enabled": stateful, "max-steps": STATEFUL_STEPS},
                # boundary cases of valid input (every optional field, each enum value, limits):
                # they reach the services; fuzzing adds invalid input at random
                "coverage": {"enabled": owner, "generation": {"mode": "positive"}},
            },
        }
    )


def load_schema(world, role: str, token: str, *, objects=None, stateful: bool = False):
    """The served schema, with the tenant's objects as path parameter dictionaries."""
    objects = objects or Objects(world)
    dictionaries, operations = {}, []
    for regex, parameters in PATH_OBJECTS:
        bindings = {}
        for parameter, (kind, key) in parameters.items():
            name = f"{kind}.{key}"
            dictionaries[name] = {"values": [objects.keys(kind, world.acme)[key]]}
            bindings[f"path.{parameter}"] = {"dictionary": name, "probability": 0.8}
        operations.append({"include-path-regex": regex, "parameters": bindings})
    return schemathesis.openapi.from_wsgi(
        SCHEMA_URL,
        InProcessWSGI(),
        config=_config(role, token, dictionaries, operations, stateful=stateful),
    )


def describe(exc: BaseException) -> str:
    """The failures of a check, in words (the first lines of each)."""
    found = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    parts = []
    for failure in found:
        text = getattr(failure, "message", None) or str(failure)
        title = getattr(failure, "title", type(failure).__name__)
        parts.append(f"{title}: " + "\n    ".join(text.splitlines()[:25]))
    return "\n  ".join(parts)


def case_checker(token: str):
    """The test of one generated case: call it with the token, run every check."""
    headers = {"Authorization": f"Bearer {token}"}  # explicit, so ignored_auth knows it is ours

    def check_case(case):
        case.call_and_validate(headers=headers, checks=CHECKS)

    return check_case


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["owner", "viewer"])
def test_api_conforms_to_its_schema(role, world, offline):
    """Every operation, with the examples, coverage and fuzzing phases of schemathesis.

    The operations run one after the other in this test (schemathesis' lazy pytest loader
    does not run on pytest 9), and every failure is reported at the end with its operation.
    """
    from schemathesis.core.result import Ok
    from schemathesis.pytest.lazy import get_all_tests

    user = world.alice if role == "owner" else world.bob
    token = make_token(world.acme, user)
    schema = load_schema(world, role, token)
    failures, timings, ran = [], [], 0
    for result in get_all_tests(
        schema=schema, test_func=case_checker(token), settings=None, given_kwargs={}
    ):
        if not isinstance(result, Ok):  # an operation schemathesis cannot even build a test for
            failures.append(f"invalid schema: {result.err()}")
            continue
        operation, test = result.ok()
        ran += 1
        started, calls = time.monotonic(), schema.app.calls
        try:
            test()
        except (Exception, BaseExceptionGroup) as exc:  # a check failed: report it, go on
            failures.append(f"{operation.label}: {describe(exc)}")
        timings.append((time.monotonic() - started, schema.app.calls - calls, operation.label))
    if os.environ.get("SCHEMATHESIS_TIMINGS"):
        for took, calls, label in sorted(timings, reverse=True)[:25]:
            print(f"{took:6.2f}s {calls:4d} calls {label}")
        print(f"{schema.app.calls} calls in all")
    assert ran > 90, ran  # every operation of the schema ran
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)


# authentication ------------------------------------------------------------------------------
def _operations() -> list[tuple[str, str]]:
    client = APIClient()
    spec = json.loads(
        client.get(SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json").content
    )
    return [
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]


@pytest.mark.django_db
def test_every_tenant_operation_requires_authentication(world):
    """Every operation under /t/<tenant>/ answers 401 to a request without a token."""
    operations = _operations()
    tenant_operations = [(m, p) for m, p in operations if p.startswith("/api/v1/t/{tenant}/")]
    assert len(tenant_operations) > 90  # the walk itself works
    client = APIClient()
    for method, path in tenant_operations:
        url = re.sub(r"\{tenant\}", "acme", path)
        url = re.sub(r"\{(id|seq|number)\}", "1", url)
        url = re.sub(r"\{prefix\}", "AbCd1234", url)
        url = re.sub(r"\{\w+\}", "anything", url)
        response = getattr(client, method)(url, {}, format="json")
        assert response.status_code == 401, (method, path, response.status_code)
        assert response["WWW-Authenticate"].startswith("Bearer"), (method, path)
        body = response.json()
        assert body["type"] == "client_error" and body["errors"][0]["code"] in (
            "not_authenticated",
            "authentication_failed",
        ), body
    # and the operations outside a tenant are the documentation and the caller's own tenants
    others = sorted({p for _, p in operations} - {p for _, p in tenant_operations})
    assert others == [
        "/api/v1/schemas/policy-definition/",
        "/api/v1/schemas/workflow-definition/",
        "/api/v1/tenants/",
    ], others
    assert client.get("/api/v1/tenants/").status_code == 401


# stateful phase ------------------------------------------------------------------------------
@pytest.mark.django_db
def test_api_conforms_in_stateful_sequences(world, offline):
    """Schemathesis' stateful phase: sequences of calls chained through the links it infers
    from the schema (a created object's slug or id fed to its detail routes and actions), as
    the owner, with every check above on every response. Bounded: a fixed number of scenarios
    of a few steps each, derandomized."""
    import hypothesis

    token = make_token(world.acme, world.alice)
    headers = {"Authorization": f"Bearer {token}"}
    schema = load_schema(world, "owner", token, stateful=True)
    machine = schema.as_state_machine()
    assert schema.statistic.transitions.selected > 50  # links inferred between operations

    class Scenario(machine):
        def get_call_kwargs(self, case):
            return {"headers": headers}

        def validate_response(self, response, case, **kwargs):
            case.validate_response(response, checks=CHECKS, headers=headers)

    Scenario.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
    assert schema.app.calls >= STATEFUL_SCENARIOS


# the input limits, against the documented responses ----------------------------------------
@pytest.mark.django_db
def test_input_limit_answers_are_documented(world, offline):
    """A NUL character, a body over the limit and JSON nested past the limit, sent to every
    operation that takes a body (and a NUL query parameter to every operation): each answer
    is a 4xx the schema documents for the operation, in its documented shape."""
    from schemathesis.core.result import Ok

    token = make_token(world.acme, world.alice)
    headers = {"Authorization": f"Bearer {token}"}
    objects = Objects(world)
    schema = load_schema(world, "owner", token, objects=objects)
    failures, sent = [], 0
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            continue
        operation = result.ok()
        path_parameters = {"tenant": "acme"}
        for regex, parameters in PATH_OBJECTS:
            if re.search(regex, operation.path):
                for name, (kind, key) in parameters.items():
                    path_parameters[name] = objects.keys(kind, world.acme)[key]
                break
        for name in re.findall(r"\{(\w+)\}", operation.path):  # routes without objects here
            path_parameters.setdefault(name, "1" if name in ("id", "seq", "number") else "none")
        bodies = [None]
        if operation.method.upper() in ("POST", "PUT", "PATCH") and operation.body:
            bodies = [
                {"name": "\u0000"},
                "[" * 5000 + "]" * 5000,
                {"input": "a" * (3 * 2**20)},
            ]
        for body in bodies:
            kwargs = {"path_parameters": path_parameters, "query": {"q\u0000": "1"}}
            if body is not None:
                kwargs = {"path_parameters": path_parameters}
                if isinstance(body, str):
                    kwargs["body"], kwargs["media_type"] = body, "application/json"
                else:
                    kwargs["body"] = body
            case = operation.Case(**kwargs)
            response = case.call(headers=headers)
            sent += 1
            expected = 400 if body is None or not isinstance(body, dict) or "name" in body else 413
            try:
                assert response.status_code == expected, (response.status_code, response.text[:300])
                case.validate_response(
                    response,
                    checks=[status_code_conformance, response_schema_conformance],
                    headers=headers,
                )
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} {str(body)[:30]!r}: {describe(exc)}")
    assert sent > 100, sent
    assert not failures, f"{len(failures)} failed:\n\n" + "\n\n".join(failures)
