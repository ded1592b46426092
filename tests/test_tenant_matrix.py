"""The tenant matrix: every API route, dashboard page and websocket route, for every role,
against an object of the caller's tenant, of another tenant, and one that does not exist.

What it proves (DESIGN.md 4.1, "an object of another tenant is a 404, never a 403"):

* own object: every member role gets an answer about the object (a success, a 400, or a
  403 for a role without the permission), never a 404 and never a 5xx;
* another tenant's object and a missing one answer alike: the same status and the same body
  once the ids in it are blanked. When the role may perform the action (its own object did
  not answer 403/405) that answer is 404; a role refused the action altogether is refused
  before any object is looked up, so it gets the same 403 for both, which reveals nothing;
* another tenant (``/t/globex/...``) and a tenant that does not exist answer the same 404,
  and so does a signed-in non-member for every URL of the tenant;
* websockets: every member role's socket to its own tenant (and run) opens; another
  tenant's run and a missing run are refused alike, and so are a non-member, another
  tenant and a tenant that does not exist;
* related fields naming another tenant's objects (a tool grant of globex's tool, a run of
  globex's workflow or agent, an agent version with globex's provider, secret or tools, a
  workflow whose steps name globex's agent or tool, ...) are refused with a 400 or 404 and
  store nothing.

The route tables below are the matrix's contract: each route the resolvers know must map to
an object kind (how to make one in each tenant) or be declared object-less. A route added
without an entry fails ``test_every_route_joins_the_matrix``, naming it.

Each test creates only the objects its route needs; each role's requests run inside a
savepoint that is rolled back, so one role's successful write does not change what the next
role sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import re
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from agents.models import Agent, AgentVersion, ProviderConnection, ToolGrant
from agents.services.tools import tool_grant_create
from controlplane import context
from controlplane.audit.models import AuditEvent
from controlplane.audit.services import audit_record
from controlplane.routing import websocket_urlpatterns
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership
from policies import services as policy_services
from policies.models import PolicyDecision
from runs import services as run_services
from runs import workflow_services
from runs.approvals import services as approval_services
from runs.approvals.models import ApprovalRequest
from runs.execution import progress
from runs.models import Run, Workflow, WorkflowVersion
from tests.agents.registry_factories import (
    make_agent,
    make_document,
    make_mcp_server,
    make_provider,
    make_secret,
    make_ticket,
    make_tool,
)
from tests.factories import make_token

OBJECTLESS = "objectless"  # a tenant URL about the tenant or a collection, no object in it
GLOBAL = "global"  # no tenant in the URL at all

# Every named API route -> the kind of object in its URL (see Objects), OBJECTLESS or GLOBAL.
API_ROUTES: dict[str, str] = {
    "api:tenant-list": GLOBAL,
    "api:schema": GLOBAL,
    "api:docs": GLOBAL,
    "api:redoc": GLOBAL,
    "api:workflow-definition-schema": GLOBAL,
    "api:policy-definition-schema": GLOBAL,
    "api:member-list": OBJECTLESS,
    "api:member-detail": "member",
    "api:invitation-list": OBJECTLESS,
    "api:invitation-detail": "invitation",
    "api:token-list": OBJECTLESS,
    "api:token-detail": "token",
    "api:audit-event-list": OBJECTLESS,
    "api:audit-event-export": OBJECTLESS,
    "api:audit-event-detail": "audit_event",
    "api:agent-list": OBJECTLESS,
    "api:agent-detail": "agent",
    "api:agent-diff": "agent",
    "api:agent-permissions": "agent",
    "api:agent-publish": "agent",
    "api:agent-rollback": "agent",
    "api:agent-versions": "agent",
    "api:agent-version": "agent_version",
    "api:agent-memory": "agent",
    "api:agent-memory-key": "agent_memory",
    "api:tool-list": OBJECTLESS,
    "api:tool-detail": "tool",
    "api:tool-permissions": "tool",
    "api:tool-grant-list": OBJECTLESS,
    "api:tool-grant-detail": "tool_grant",
    "api:provider-list": OBJECTLESS,
    "api:provider-detail": "provider",
    "api:provider-test": "provider",
    "api:mcp-server-list": OBJECTLESS,
    "api:mcp-server-detail": "mcp_server",
    "api:mcp-server-discover": "mcp_server",
    "api:secret-list": OBJECTLESS,
    "api:secret-detail": "secret",
    "api:knowledge-document-list": OBJECTLESS,
    "api:knowledge-document-detail": "document",
    "api:ticket-list": OBJECTLESS,
    "api:ticket-detail": "ticket",
    "api:workflow-list": OBJECTLESS,
    "api:workflow-validate": OBJECTLESS,
    "api:workflow-detail": "workflow",
    "api:workflow-publish": "workflow",
    "api:workflow-versions": "workflow",
    "api:run-list": OBJECTLESS,
    "api:run-detail": "run",
    "api:run-cancel": "run",
    "api:run-events": "run",
    "api:run-rerun": "run",
    "api:run-resume": "run",
    "api:approval-list": OBJECTLESS,
    "api:approval-detail": "approval",
    "api:approval-decide": "approval",
    "api:policy-list": OBJECTLESS,
    "api:policy-detail": "policy",
    "api:policy-activate": "policy",
    "api:policy-diff": "policy",
    "api:policy-mode": "policy",
    "api:policy-permissions": "policy",
    "api:policy-simulate": "policy",
    "api:policy-versions": "policy",
    "api:policy-version": "policy_version",
    "api:policy-decision-list": OBJECTLESS,
    "api:policy-decision-detail": "decision",
}

# Every named dashboard route -> the same. Sign-in, sign-out and the tenant picker are GLOBAL.
DASHBOARD_ROUTES: dict[str, str] = {
    "dashboard:home": GLOBAL,
    "dashboard:login": GLOBAL,
    "dashboard:logout": GLOBAL,
    "dashboard:invitations": GLOBAL,
    "dashboard:overview": OBJECTLESS,
    "dashboard:members": OBJECTLESS,
    "dashboard:tokens": OBJECTLESS,
    "dashboard:audit": OBJECTLESS,
    "dashboard:agents": OBJECTLESS,
    "dashboard:agent-create": OBJECTLESS,
    "dashboard:agent-detail": "agent",
    "dashboard:agent-edit": "agent",
    "dashboard:agent-memory": "agent",
    "dashboard:tools": OBJECTLESS,
    "dashboard:tool-create": OBJECTLESS,
    "dashboard:tool-detail": "tool",
    "dashboard:tool-edit": "tool",
    "dashboard:providers": OBJECTLESS,
    "dashboard:provider-create": OBJECTLESS,
    "dashboard:provider-detail": "provider",
    "dashboard:provider-edit": "provider",
    "dashboard:mcp-servers": OBJECTLESS,
    "dashboard:mcp-server-create": OBJECTLESS,
    "dashboard:mcp-server-detail": "mcp_server",
    "dashboard:mcp-server-edit": "mcp_server",
    "dashboard:secrets": OBJECTLESS,
    "dashboard:secret-detail": "secret",
    "dashboard:knowledge": OBJECTLESS,
    "dashboard:knowledge-create": OBJECTLESS,
    "dashboard:knowledge-detail": "document",
    "dashboard:workflows": OBJECTLESS,
    "dashboard:workflow-create": OBJECTLESS,
    "dashboard:workflow-detail": "workflow",
    "dashboard:workflow-start": "workflow",
    "dashboard:runs": OBJECTLESS,
    "dashboard:run-detail": "run",
    "dashboard:policies": OBJECTLESS,
    "dashboard:policy-create": OBJECTLESS,
    "dashboard:policy-decisions": OBJECTLESS,
    "dashboard:policy-detail": "policy",
    "dashboard:policy-simulate": "policy",
    "dashboard:approvals": OBJECTLESS,
    "dashboard:approval-detail": "approval",
}

# Every websocket route -> the same.
WEBSOCKET_ROUTES: dict[str, str] = {
    "ws/t/<slug:tenant>/events/": OBJECTLESS,
    "ws/t/<slug:tenant>/runs/": OBJECTLESS,
    "ws/t/<slug:tenant>/runs/<int:run>/": "run",
}

MISSING_TENANT = "no-such-tenant"
# URL arguments naming nothing, in every tenant (each matches its route's pattern).
MISSING_KEYS = {
    "slug": "no-such-object",
    "name": "no-such-object",
    "username": "nobody-at-all",
    "prefix": "ZZZZZZZZ",
    "pk": 987654321,
    "run": 987654321,
    "seq": 987654321,
    "number": 987654,
    "key": "no-such-key",
}
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
ROLES = [Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.OWNER]
# A 403 or 405 on the caller's own object means the action is refused before any lookup.
REFUSED_BEFORE_LOOKUP = {403, 405}

WORKFLOW_DEFINITION = {
    "input_schema": {"type": "object"},
    "example_input": {},
    "steps": [{"id": "calc", "type": "tool", "tool": "calc", "arguments": {"expression": "1"}}],
}
POLICY_DEFINITION = {
    "rules": [
        {
            "id": "big-refunds",
            "effect": "require_approval",
            "actions": ["call_tool"],
            "tools": ["refund"],
            "condition": "args.amount > 100",
        }
    ]
}


# the routes ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Route:
    name: str
    route: str  # the joined route text, e.g. "api/v1/t/<slug:tenant>/^runs/(?P<pk>\d+)/$"
    kwargs: tuple[str, ...]  # URL arguments besides the tenant
    methods: tuple[str, ...]
    tenant: bool  # has <tenant> in the URL


def _walk(patterns, namespaces, prefix, kwargs, found: dict[str, Route]) -> None:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        names = [*kwargs, *pattern.pattern.regex.groupindex]
        if isinstance(pattern, URLResolver):
            inner = [*namespaces, pattern.namespace] if pattern.namespace else namespaces
            _walk(pattern.url_patterns, inner, route, names, found)
        elif isinstance(pattern, URLPattern) and pattern.name and namespaces:
            name = ":".join([*namespaces, pattern.name])
            actions = getattr(pattern.callback, "actions", None)
            if actions:  # a DRF viewset route: exactly its mapped methods
                methods = tuple(m for m in HTTP_METHODS if m in actions)
            elif namespaces[0] == "api":
                methods = ("get",)
            else:
                methods = ("get", "post")
            found[name] = Route(
                name=name,
                route=route,
                kwargs=tuple(n for n in names if n != "tenant"),
                methods=methods,
                tenant="tenant" in names,
            )


def all_routes() -> dict[str, Route]:
    found: dict[str, Route] = {}
    _walk(get_resolver().url_patterns, [], "", [], found)
    return {name: r for name, r in found.items() if name.split(":")[0] in ("api", "dashboard")}


ROUTES = all_routes()


def _cases(prefix: str) -> list[Any]:
    return [
        pytest.param(route.name, method, id=f"{method.upper()} {route.name}")
        for route in ROUTES.values()
        if route.name.startswith(prefix)
        for method in route.methods
    ]


def test_every_route_joins_the_matrix():
    api = {n for n in ROUTES if n.startswith("api:")}
    dashboard = {n for n in ROUTES if n.startswith("dashboard:")}
    websockets = {str(p.pattern) for p in websocket_urlpatterns}
    assert "api:run-detail" in api and "dashboard:run-detail" in dashboard  # the walk works
    for kind, existing, table in (
        ("API", api, API_ROUTES),
        ("dashboard", dashboard, DASHBOARD_ROUTES),
        ("websocket", websockets, WEBSOCKET_ROUTES),
    ):
        missing = sorted(existing - set(table))
        assert not missing, (
            f"{kind} routes not in the tenant matrix: {missing}. Map each to an object kind of "
            "Objects (or OBJECTLESS / GLOBAL) in tests/test_tenant_matrix.py."
        )
        stale = sorted(set(table) - existing)
        assert not stale, f"{kind} routes in the tenant matrix that no longer exist: {stale}"
    for table in (API_ROUTES, DASHBOARD_ROUTES, WEBSOCKET_ROUTES):
        for name, kind in table.items():
            assert kind in (OBJECTLESS, GLOBAL) or hasattr(Objects, kind), (name, kind)
    for route in ROUTES.values():
        table = API_ROUTES if route.name.startswith("api:") else DASHBOARD_ROUTES
        kind = table.get(route.name)
        # a route with an object in its URL must name how to make one; a global one has no tenant
        assert (kind == GLOBAL) == (not route.tenant), route
        assert (kind in (OBJECTLESS, GLOBAL)) == (not route.kwargs), route


# the objects ---------------------------------------------------------------------------------
class Objects:
    """One object of each kind per tenant, made on first use; each returns its URL arguments.

    globex's objects have slugs acme does not use, so naming one under /t/acme/ finds nothing
    of acme's.
    """

    def __init__(self, world):
        self.world = world
        self._made: dict[tuple[str, str], dict[str, Any]] = {}

    def keys(self, kind: str, tenant) -> dict[str, Any]:
        key = (kind, tenant.slug)
        if key not in self._made:
            with context.system_context("tests", tenant=tenant):
                self._made[key] = getattr(self, kind)(tenant)
        return self._made[key]

    # one method per object kind ----------------------------------------------------------
    def member(self, tenant):
        user = self.world.oscar if tenant == self.world.acme else self.world.charlie
        return {"username": user.username}

    def invitation(self, tenant):
        from controlplane.tenancy.services import membership_invite

        invitation = membership_invite(tenant=tenant, username=f"new-{tenant.slug}", role="viewer")
        return {"username": invitation.username}

    def token(self, tenant):
        from controlplane.api.services import api_token_create

        user = self.world.oscar if tenant == self.world.acme else self.world.charlie
        issued = api_token_create(tenant=tenant, user=user, name="matrix", scope="read")
        return {"prefix": issued.token.prefix}

    def audit_event(self, tenant):
        # sequence numbers count per tenant: globex's event must have a number acme lacks
        acme_last = AuditEvent.objects.for_tenant(self.world.acme).count()
        if tenant == self.world.acme:
            assert acme_last > 0
            return {"seq": 1}
        while AuditEvent.objects.for_tenant(tenant).count() <= acme_last + 10:
            audit_record(action="matrix.filler", tenant=tenant)
        return {"seq": AuditEvent.objects.for_tenant(tenant).count()}

    def provider(self, tenant):
        return {"slug": make_provider(tenant, slug=f"{tenant.slug}-sim").slug}

    def agent(self, tenant):
        provider = self.keys("provider", tenant)["slug"]
        agent = make_agent(
            tenant,
            slug=f"{tenant.slug}-agent",
            provider=ProviderConnection.objects.for_tenant(tenant).get(slug=provider),
            tags=["support"],
        )
        return {"slug": agent.slug}

    def agent_version(self, tenant):
        return {"slug": self.keys("agent", tenant)["slug"], "number": 1}

    def agent_memory(self, tenant):
        from runs.models import AgentMemory

        slug = self.keys("agent", tenant)["slug"]
        agent = Agent.objects.for_tenant(tenant).get(slug=slug)
        AgentMemory.objects.for_tenant(tenant).create(
            tenant=tenant, agent=agent, key=f"{tenant.slug}-key", value={"remembered": True}
        )
        return {"slug": slug, "key": f"{tenant.slug}-key"}

    def tool(self, tenant):
        return {"slug": make_tool(tenant, slug=f"{tenant.slug}-tool").slug}

    def tool_grant(self, tenant):
        tool = make_tool(tenant, slug=f"{tenant.slug}-granted")
        grant = tool_grant_create(tool=tool, agent_tag="support")
        return {"pk": grant.pk}

    def mcp_server(self, tenant):
        return {"slug": make_mcp_server(tenant, slug=f"{tenant.slug}-mcp").slug}

    def secret(self, tenant):
        return {"name": make_secret(tenant, name=f"{tenant.slug}-secret").name}

    def document(self, tenant):
        return {"pk": make_document(tenant).pk}

    def ticket(self, tenant):
        return {"number": make_ticket(tenant).number}

    def workflow(self, tenant):
        make_tool(tenant, slug="calc")
        workflow = workflow_services.workflow_create(
            tenant=tenant,
            slug=f"{tenant.slug}-flow",
            name="Flow",
            definition=WORKFLOW_DEFINITION,
        )
        return {"slug": workflow.slug}

    def run(self, tenant):
        workflow = Workflow.objects.for_tenant(tenant).get(
            slug=self.keys("workflow", tenant)["slug"]
        )
        run, _ = run_services.run_start(tenant=tenant, workflow=workflow, input={})
        return {"pk": run.pk, "run": run.pk}

    def approval(self, tenant):
        run = Run.objects.for_tenant(tenant).get(pk=self.keys("run", tenant)["pk"])
        approval = approval_services.approval_create(
            run=run, step_run=None, kind="approval", title="Go ahead?"
        )
        return {"pk": approval.pk}

    def policy(self, tenant):
        make_tool(tenant, slug="refund")  # a policy names only tools its tenant has
        policy = policy_services.policy_create(
            tenant=tenant,
            slug=f"{tenant.slug}-guard",
            name="Guard",
            definition=POLICY_DEFINITION,
            activate=True,
        )
        return {"slug": policy.slug}

    def policy_version(self, tenant):
        return {"slug": self.keys("policy", tenant)["slug"], "number": 1}

    def decision(self, tenant):
        decision = PolicyDecision.objects.for_tenant(tenant).create(
            tenant=tenant,
            step_key="pay",
            action="call_tool",
            tool="refund",
            effect="allow",
            reason="no rule matched",
            inputs_hash="0" * 64,
            inputs={},
        )
        return {"pk": decision.pk}


@pytest.fixture
def objects(world):
    with mock.patch.object(progress, "dispatch"):  # runs stay queued; nothing goes to a broker
        yield Objects(world)


# requests and answers ------------------------------------------------------------------------
IGNORED_HTML = [
    re.compile(r'nonce="[^"]*"'),
    re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"'),
    re.compile(r'"X-CSRFToken": "[^"]*"'),
    re.compile(r'csrf[-_]token" content="[^"]*"'),
]


def blanked(response, *keysets: dict[str, Any]) -> str:
    """The body with the given URL arguments, per-request tokens and the tenant blanked."""
    body = response.content.decode() if not getattr(response, "streaming", False) else ""
    values = sorted(
        {str(v) for keys in keysets for v in keys.values()} | {"globex", MISSING_TENANT},
        key=len,
        reverse=True,
    )
    for value in values:
        # whole words only: "2" must not blank the "2" of "htmx-2.min.js"
        body = re.sub(rf"(?<![\w.-]){re.escape(value)}(?![\w.-])", "<id>", body)
    for pattern in IGNORED_HTML:
        body = pattern.sub("<ignored>", body)
    return body


def answer(response, *keysets) -> tuple[int, str]:
    return response.status_code, blanked(response, *keysets)


def differences(a: tuple[int, str], b: tuple[int, str]) -> str:
    """What differs between two answers (for the failure message)."""
    lines = difflib.unified_diff(a[1].splitlines(), b[1].splitlines(), lineterm="", n=1)
    return f"status {a[0]} vs {b[0]}\n" + "\n".join(list(lines)[:40])


def url_for(route: Route, tenant_slug: str, keys: dict[str, Any]) -> str:
    kwargs = {k: keys[k] for k in route.kwargs}
    if route.tenant:
        kwargs["tenant"] = tenant_slug
    return reverse(route.name, kwargs=kwargs)


def send(client, method: str, url: str):
    if method in ("get", "delete"):
        return getattr(client, method)(url)
    if isinstance(client, APIClient):
        return getattr(client, method)(url, {}, format="json")
    return getattr(client, method)(url, {})


@dataclasses.dataclass
class Caller:
    role: str
    client: Any


def api_callers(world) -> list[Caller]:
    callers = []
    for role in ROLES:
        client = APIClient()
        token = make_token(world.acme, world.user_with_role(role))
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        callers.append(Caller(role, client))
    return callers


def session_client(user, api: bool) -> Any:
    client = APIClient() if api else Client()
    client.force_login(user)
    return client


def dashboard_callers(world) -> list[Caller]:
    return [Caller(role, session_client(world.user_with_role(role), api=False)) for role in ROLES]


@contextlib.contextmanager
def rolled_back():
    """Run a caller's requests in a savepoint that is undone afterwards."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def check_route(route: Route, method: str, kind: str, world, objects, callers, outsider) -> None:
    """The matrix for one route and method (API and dashboard alike)."""
    acme, globex = world.acme, world.globex
    if kind == OBJECTLESS:
        own = foreign = {}
        missing: dict[str, Any] = {}
    else:
        own = objects.keys(kind, acme)
        foreign = objects.keys(kind, globex)
        missing = {k: MISSING_KEYS[k] for k in route.kwargs}
    own_url = url_for(route, acme.slug, own)
    foreign_url = url_for(route, acme.slug, foreign)
    missing_url = url_for(route, acme.slug, missing)

    every = (own, foreign, missing)

    # the tenant level: another tenant and no tenant answer the same 404 (a member of acme,
    # whose token is bound to acme, asks for globex and for a tenant that does not exist) ...
    owner = callers[-1].client
    with rolled_back():
        reference = answer(send(owner, method, url_for(route, MISSING_TENANT, missing)), *every)
        assert reference[0] == 404, (route.name, method, reference)
        other_tenant = answer(send(owner, method, url_for(route, globex.slug, foreign)), *every)
        why = differences(other_tenant, reference)
        assert other_tenant == reference, (route.name, method, "globex tenant", why)
    # ... and a signed-in non-member gets that same 404 for every URL of acme
    with rolled_back():
        reference = answer(send(outsider, method, url_for(route, MISSING_TENANT, missing)), *every)
        assert reference[0] == 404, (route.name, method, "outsider", reference)
        for label, url in (("own", own_url), ("foreign", foreign_url), ("missing", missing_url)):
            got = answer(send(outsider, method, url), *every)
            why = differences(got, reference)
            assert got == reference, (route.name, method, "outsider", label, why)

    if kind == OBJECTLESS:
        for caller in callers:
            with rolled_back():
                status = send(caller.client, method, own_url).status_code
            assert status != 404 and status < 500, (route.name, method, caller.role, status)
        return

    # the object level, for every role of acme
    for caller in callers:
        with rolled_back():
            # own last: a flash message it leaves would show on the next page
            theirs = answer(send(caller.client, method, foreign_url), *every)
            nothing = answer(send(caller.client, method, missing_url), *every)
            own_status = send(caller.client, method, own_url).status_code
        where = (route.name, method, caller.role)
        assert own_status != 404 and own_status < 500, (*where, "own", own_status)
        assert theirs == nothing, (*where, "foreign vs missing", differences(theirs, nothing))
        if own_status not in REFUSED_BEFORE_LOOKUP:
            assert theirs[0] == 404, (*where, "foreign", theirs)
        else:
            assert theirs[0] in (404, own_status), (*where, "foreign", theirs)


@pytest.mark.parametrize(("name", "method"), _cases("api:"))
def test_api_route(name, method, world, objects):
    route = ROUTES[name]
    kind = API_ROUTES.get(name)
    assert kind is not None, f"{name} is not in API_ROUTES: add it to the tenant matrix"
    if kind == GLOBAL:
        check_global_api_route(route, world)
        return
    callers = api_callers(world)
    outsider = session_client(world.charlie, api=True)
    check_route(route, method, kind, world, objects, callers, outsider)


@pytest.mark.parametrize(("name", "method"), _cases("dashboard:"))
def test_dashboard_route(name, method, world, objects):
    route = ROUTES[name]
    kind = DASHBOARD_ROUTES.get(name)
    assert kind is not None, f"{name} is not in DASHBOARD_ROUTES: add it to the tenant matrix"
    if kind == GLOBAL:
        return  # sign-in, sign-out and the tenant picker: tests/dashboard/test_pages.py
    callers = dashboard_callers(world)
    outsider = session_client(world.charlie, api=False)
    check_route(route, method, kind, world, objects, callers, outsider)


def check_global_api_route(route: Route, world) -> None:
    """A URL without a tenant shows no tenant's data but the caller's own."""
    client = APIClient()
    token = make_token(world.globex, world.charlie)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.get(reverse(route.name))
    assert response.status_code == 200, (route.name, response.status_code)
    if route.name == "api:tenant-list":
        slugs = [t["slug"] for t in response.json()]
        assert slugs == ["globex"], slugs


# websockets ----------------------------------------------------------------------------------
def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _outcome(path: str, cookie: bytes) -> tuple[str, int | None]:
    """("open", None) or ("refused", close code): refusals close before or right after accept."""
    from controlplane.asgi import application

    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    if not connected:
        return "refused", code
    try:
        while not await communicator.receive_nothing(timeout=0.3):
            message = await communicator.receive_output(timeout=1)
            if message["type"] == "websocket.close":
                return "refused", message.get("code")
        return "open", None  # accepted and still open (it may have sent its backlog)
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pattern", sorted(WEBSOCKET_ROUTES))
def test_websocket_route(pattern, world, objects):
    kind = WEBSOCKET_ROUTES[pattern]
    kwargs = re.findall(r"<(?:\w+:)?(\w+)>", pattern)

    def path(tenant: str, keys: dict[str, Any]) -> str:
        values = {"tenant": tenant, **keys}
        return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), pattern)

    if kind == OBJECTLESS:
        own = foreign = missing = {}
    else:
        own = objects.keys(kind, world.acme)
        foreign = objects.keys(kind, world.globex)
        missing = {k: MISSING_KEYS[k] for k in kwargs if k != "tenant"}
    cookies = {role: _cookie(world.user_with_role(role)) for role in ROLES}
    outsider = _cookie(world.charlie)

    async def scenario():
        results = {}
        for role, cookie in cookies.items():
            results[role] = [
                await _outcome(path("acme", own), cookie),
                await _outcome(path("acme", foreign), cookie),
                await _outcome(path("acme", missing), cookie),
            ]
        owner = cookies[Role.OWNER]
        results["tenants"] = [
            await _outcome(path(MISSING_TENANT, missing), owner),
            await _outcome(path("globex", foreign), owner),
        ]
        results["outsider"] = [
            await _outcome(path(MISSING_TENANT, missing), outsider),
            await _outcome(path("acme", own), outsider),
            await _outcome(path("acme", foreign), outsider),
            await _outcome(path("acme", missing), outsider),
        ]
        return results

    results = async_to_sync(scenario)()
    for role in ROLES:
        own_outcome, theirs, nothing = results[role]
        assert own_outcome == ("open", None), (pattern, role, own_outcome)
        if kind != OBJECTLESS:
            assert theirs == nothing and theirs[0] == "refused", (pattern, role, theirs, nothing)
    missing_tenant, other_tenant = results["tenants"]
    assert missing_tenant[0] == "refused" and other_tenant == missing_tenant, results["tenants"]
    assert len(set(results["outsider"])) == 1, results["outsider"]
    assert results["outsider"][0][0] == "refused", results["outsider"]


# related fields naming another tenant's objects ----------------------------------------------
@dataclasses.dataclass
class Related:
    """A write through the API or a dashboard form that names globex's objects from acme."""

    attempt: Callable[[Any, Any, Objects], Any]  # (world, client, objects) -> response
    statuses: tuple[int, ...] = (400,)
    dashboard: bool = False


def _slug(objects: Objects, kind: str, tenant) -> str:
    return objects.keys(kind, tenant)["slug"]


def _acme(world, objects):
    return world.acme, world.globex


def _agent_config(provider: str, **extra) -> dict[str, Any]:
    return {"provider": provider, "model": "sim-1", "system_prompt": "Hi.", **extra}


def _definition(step: dict[str, Any]) -> dict[str, Any]:
    return {"input_schema": {"type": "object"}, "example_input": {}, "steps": [step]}


def _globex_tool_step(world, objects) -> dict[str, Any]:
    return {"id": "s", "type": "tool", "tool": _slug(objects, "tool", world.globex)}


def _globex_agent_step(world, objects) -> dict[str, Any]:
    return {"id": "s", "type": "agent", "agent": _slug(objects, "agent", world.globex)}


RELATED: dict[str, Related] = {
    "tool grant of globex's tool": Related(
        lambda w, c, o: c.post(
            "/api/v1/t/acme/tool-grants/",
            {"tool": _slug(o, "tool", w.globex), "agent": _slug(o, "agent", w.acme)},
            format="json",
        )
    ),
    "tool grant to globex's agent": Related(
        lambda w, c, o: c.post(
            "/api/v1/t/acme/tool-grants/",
            {"tool": _slug(o, "tool", w.acme), "agent": _slug(o, "agent", w.globex)},
            format="json",
        )
    ),
    "run of globex's workflow": Related(
        lambda w, c, o: c.post(
            "/api/v1/t/acme/runs/", {"workflow": _slug(o, "workflow", w.globex)}, format="json"
        )
    ),
    "run of globex's agent": Related(
        lambda w, c, o: c.post(
            "/api/v1/t/acme/runs/", {"agent": _slug(o, "agent", w.globex)}, format="json"
        )
    ),
    "agent with globex's provider": Related(
        lambda w, c, o: c.post(
            "/api/v1/t/acme/agents/",
            {
                "slug": "thief",
                "name": "Thief",
                "kind": "llm",
                "config": _agent_config(_slug(o, "provider", w.globex)),
            },
            format="json",
        )
    ),
    "agent version with globex's provider": Related(
        lambda w, c, o: c.post(
            f"/api/v1/t/acme/agents/{_slug(o, 'agent', w.acme)}/publish/",
            {"config": _agent_config(_slug(o, "provider", w.globex))},
            format="json",
        )
    ),
    "http agent with globex's secret": Related(
        lambda w, c, o: c.post(
            "/api/v1/t/acme/agents/",
            {
                "slug": "ext",
                "name": "Ext",
                "kind": "http",
                "config": {
                    "url": "https://agents.example.com/run",
                    "auth_secret": o.keys("secret", w.globex)["name"],
                },
            },
            format="json",
        )
    ),
    "workflow with globex's tool": Related(
        lambda w, c, o: c.post(
            "/api/v1/t/acme/workflows/",
            {"slug": "thief", "name": "T", "definition": _definition(_globex_tool_step(w, o))},
            format="json",
        )
    ),
    "workflow with globex's agent": Related(
        lambda w, c, o: c.post(
            "/api/v1/t/acme/workflows/",
            {"slug": "thief", "name": "T", "definition": _definition(_globex_agent_step(w, o))},
            format="json",
        )
    ),
    "workflow version with globex's tool": Related(
        lambda w, c, o: c.post(
            f"/api/v1/t/acme/workflows/{_slug(o, 'workflow', w.acme)}/publish/",
            {"definition": _definition(_globex_tool_step(w, o))},
            format="json",
        )
    ),
    "approval of globex's run": Related(
        lambda w, c, o: c.post(
            f"/api/v1/t/acme/approvals/{o.keys('approval', w.globex)['pk']}/decide/",
            {"decision": "approve"},
            format="json",
        ),
        statuses=(404,),
    ),
    "token for globex's member": Related(
        lambda w, c, o: c.post(
            "/api/v1/t/acme/tokens/",
            {"name": "x", "scope": "read", "username": w.charlie.username},
            format="json",
        )
    ),
    "agent grant to globex's member": Related(
        lambda w, c, o: c.post(
            f"/api/v1/t/acme/agents/{_slug(o, 'agent', w.acme)}/permissions/",
            {"username": w.charlie.username, "permission": "use"},
            format="json",
        )
    ),
    "policy grant to globex's member": Related(
        lambda w, c, o: c.post(
            f"/api/v1/t/acme/policies/{_slug(o, 'policy', w.acme)}/permissions/",
            {"username": w.charlie.username, "permission": "approve"},
            format="json",
        )
    ),
    "dashboard: agent with globex's provider": Related(
        lambda w, c, o: c.post(
            "/t/acme/agents/new/",
            {
                "kind": "llm",
                "slug": "thief",
                "name": "Thief",
                "config": json.dumps(_agent_config(_slug(o, "provider", w.globex))),
            },
        ),
        dashboard=True,
    ),
    "dashboard: agent version with globex's provider": Related(
        lambda w, c, o: c.post(
            f"/t/acme/agents/{_slug(o, 'agent', w.acme)}/",
            {"op": "publish", "config": json.dumps(_agent_config(_slug(o, "provider", w.globex)))},
        ),
        dashboard=True,
    ),
    "dashboard: grant globex's tool to an agent": Related(
        lambda w, c, o: c.post(
            f"/t/acme/agents/{_slug(o, 'agent', w.acme)}/",
            {"op": "grant", "tool": _slug(o, "tool", w.globex)},
        ),
        dashboard=True,
    ),
    "dashboard: grant a tool to globex's agent": Related(
        lambda w, c, o: c.post(
            f"/t/acme/tools/{_slug(o, 'tool', w.acme)}/",
            {"op": "grant", "agent": _slug(o, "agent", w.globex)},
        ),
        dashboard=True,
    ),
    "dashboard: revoke globex's tool grant": Related(
        lambda w, c, o: c.post(
            f"/t/acme/tools/{_slug(o, 'tool', w.acme)}/",
            {"op": "revoke", "grant": o.keys("tool_grant", w.globex)["pk"]},
        ),
        statuses=(404,),
        dashboard=True,
    ),
    "dashboard: workflow with globex's tool": Related(
        lambda w, c, o: c.post(
            "/t/acme/workflows/new/",
            {
                "slug": "thief",
                "name": "Thief",
                "definition": json.dumps(_definition(_globex_tool_step(w, o))),
            },
        ),
        dashboard=True,
    ),
}


def stored(world) -> dict[str, Any]:
    """What a refused write must leave as it was, in both tenants."""
    from guardian.models import UserObjectPermission

    from controlplane.api.models import ApiToken
    from runs.approvals.models import ApprovalVote

    return {
        "agents": Agent.objects.unscoped().count(),
        "agent versions": AgentVersion.objects.unscoped().count(),
        "tool grants": sorted(ToolGrant.objects.unscoped().values_list("pk", flat=True)),
        "workflows": Workflow.objects.unscoped().count(),
        "workflow versions": WorkflowVersion.objects.unscoped().count(),
        "runs": Run.objects.unscoped().count(),
        "approvals": sorted(ApprovalRequest.objects.unscoped().values_list("pk", "status")),
        "votes": ApprovalVote.objects.unscoped().count(),
        "tokens": ApiToken.objects.unscoped().count(),
        "object grants": UserObjectPermission.objects.count(),
        "members": Membership.objects.unscoped().count(),
        "globex audit": AuditEvent.objects.for_tenant(world.globex).count(),
    }


@pytest.mark.parametrize("case", sorted(RELATED))
def test_related_fields_of_another_tenant_are_refused(case, world, objects):
    related = RELATED[case]
    for kind in ("agent", "tool", "provider", "workflow", "policy", "secret", "approval"):
        objects.keys(kind, world.acme)
        objects.keys(kind, world.globex)
    objects.keys("tool_grant", world.globex)
    if related.dashboard:
        client = session_client(world.alice, api=False)
    else:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(world.acme, world.alice)}")
    before = stored(world)
    response = related.attempt(world, client, objects)
    assert response.status_code in related.statuses, (case, response.status_code)
    if not related.dashboard:
        body = response.json()
        assert (body["errors"] and body["type"] == "client_error") or body["type"] == (
            "validation_error"
        ), body
    assert stored(world) == before, case


def test_filters_naming_another_tenants_objects_find_nothing(world, objects, api):
    theirs_run = objects.keys("run", world.globex)["pk"]
    theirs_workflow = objects.keys("workflow", world.globex)["slug"]
    objects.keys("approval", world.globex)
    objects.keys("run", world.acme)
    client = api(world.alice, world.acme)
    for url in (
        f"/api/v1/t/acme/runs/?workflow={theirs_workflow}",
        f"/api/v1/t/acme/approvals/?run={theirs_run}",
        f"/api/v1/t/acme/policy-decisions/?run={theirs_run}",
    ):
        response = client.get(url)
        assert response.status_code == 200, (url, response.content)
        assert response.json()["results"] == [], url


def test_an_agent_version_pins_only_its_own_tenants_tools(world, objects, api):
    """globex grants a tool to every agent tagged "support"; acme's "support" agent gets none."""
    globex_grant = ToolGrant.objects.unscoped().get(
        pk=objects.keys("tool_grant", world.globex)["pk"]
    )
    assert globex_grant.agent_tag == "support"
    slug = objects.keys("agent", world.acme)["slug"]
    client = api(world.alice, world.acme)
    config = client.get(f"/api/v1/t/acme/agents/{slug}/").json()["config"]
    published = client.post(
        f"/api/v1/t/acme/agents/{slug}/publish/", {"config": config}, format="json"
    )
    assert published.status_code == 201, published.content
    assert published.json()["tools"] == []
