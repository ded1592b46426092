"""Policies, policy decisions and approvals API: the generic endpoint tests, plus drafts,
activation and rollback, mode, diff, simulation, decision filters and approval quorums."""

from __future__ import annotations

from unittest import mock

import pytest
from django.urls import reverse

from controlplane import context
from controlplane.audit.models import AuditEvent
from controlplane.tenancy.choices import Role
from policies import services
from policies.decision import PolicyRequest, decide, load_policy_set
from policies.models import Policy, PolicyDecision, PolicyVersion
from runs import services as run_services
from runs import workflow_services
from runs.approvals import services as approval_services
from runs.approvals.models import ApprovalRequest, ApprovalVote
from runs.execution import progress
from runs.models import Workflow
from tests.agents.registry_factories import make_tool
from tests.api_mixins import TenantEndpointTests, assert_error_shape, audit_rows
from tests.factories import UserFactory

ALLOW_ALL = {"rules": []}
REFUNDS_OVER_100 = {
    "rules": [
        {
            "id": "refunds-over-100",
            "effect": "require_approval",
            "actions": ["call_tool"],
            "tools": ["refund"],
            "condition": "args.amount > 100",
        }
    ]
}
WORKFLOW = {
    "input_schema": {"type": "object"},
    "example_input": {},
    "steps": [{"id": "calc", "type": "tool", "tool": "calc", "arguments": {"expression": "1"}}],
}


@pytest.fixture(autouse=True)
def _no_broker():
    # Runs here only carry approvals and decisions: keep them queued, send nothing to Redis.
    with mock.patch.object(progress, "dispatch"):
        yield


def make_policy(tenant, slug="guard", definition=None, activate=True, **fields) -> Policy:
    with context.system_context("tests", tenant=tenant):
        return services.policy_create(
            tenant=tenant,
            slug=slug,
            name=slug.title(),
            definition=ALLOW_ALL if definition is None else definition,
            activate=activate,
            **fields,
        )


def save_version(policy, definition, note="") -> PolicyVersion:
    with context.system_context("tests", tenant=policy.tenant):
        return services.policy_save_version(policy=policy, definition=definition, note=note)


def make_run(tenant):
    with context.system_context("tests", tenant=tenant):
        workflow = Workflow.objects.for_tenant(tenant).filter(slug="wf").first()
        if workflow is None:
            make_tool(tenant, slug="calc")
            workflow = workflow_services.workflow_create(
                tenant=tenant, slug="wf", name="WF", definition=WORKFLOW
            )
        run, _ = run_services.run_start(tenant=tenant, workflow=workflow, input={})
        return run


def make_decision(tenant, tool="refund", amount=None, effect="allow", run=None, **fields):
    """A stored decision whose inputs are exactly what the decision point records."""
    action = fields.pop("action", "call_tool")
    request = PolicyRequest(
        tenant_id=tenant.pk,
        action=action,
        agent=fields.pop("agent", "support"),
        tool=tool if action == "call_tool" else None,
        model=fields.pop("model", None),
        risk="write" if action == "call_tool" else None,
        arguments={"amount": amount} if amount is not None else {},
        run_id=run.pk if run else None,
    )
    return PolicyDecision.objects.for_tenant(tenant).create(
        tenant=tenant,
        run=run,
        step_key="pay",
        action=action,
        agent=request.agent or "",
        tool=request.tool or "",
        model=request.model or "",
        effect=effect,
        reason=fields.pop("reason", "no rule matched"),
        inputs_hash=request.digest(),
        inputs=request.recorded(),
        **fields,
    )


def policy_url(slug="guard", suffix="") -> str:
    return f"/api/v1/t/acme/policies/{slug}/{suffix}"


# -- generic endpoint tests ---------------------------------------------------------------


class TestPoliciesEndpoint(TenantEndpointTests):
    basename = "policy"
    lookup_kwarg = "slug"
    read_role = Role.VIEWER
    write_role = Role.ADMIN
    create_audit_action = "policy.create"
    update_audit_action = "policy.update"
    delete_audit_action = "policy.delete"
    update_data = {"description": "Refunds need a second pair of eyes"}
    invalid_create_data = {"slug": "x", "name": "X", "definition": {"rules": "nope"}}
    extra_routes = {
        "api:policy-versions",
        "api:policy-version",
        "api:policy-activate",
        "api:policy-mode",
        "api:policy-diff",
        "api:policy-simulate",
        "api:policy-permissions",
        "api:policy-definition-schema",
    }

    def make_object(self, world, tenant):
        return make_policy(tenant, slug=f"made-{tenant.slug}", definition=REFUNDS_OVER_100)

    def lookup(self, obj):
        return obj.slug

    def create_data(self, world):
        return {"slug": "refunds", "name": "Refunds", "definition": REFUNDS_OVER_100}


class TestPolicyDecisionsEndpoint(TenantEndpointTests):
    basename = "policy-decision"
    lookup_kwarg = "pk"
    read_role = Role.VIEWER
    write_role = None

    def make_object(self, world, tenant):
        return make_decision(tenant, amount=10)

    def lookup(self, obj):
        return str(obj.pk)


# Every custom action: (method, suffix, body, audit action of a success or None for reads).
ACTIONS = [
    ("get", "versions/", None, None),
    ("post", "versions/", {"definition": ALLOW_ALL, "note": "empty"}, "policy.version"),
    ("get", "versions/1/", None, None),
    ("post", "activate/", {"version": 2}, "policy.activate"),
    ("post", "mode/", {"mode": "log_only"}, "policy.mode"),
    ("get", "diff/?from=1&to=2", None, None),
    ("post", "simulate/", {"version": 2}, None),
    ("post", "permissions/", {"username": "bob"}, "permission.grant"),
]
WRITES = [a for a in ACTIONS if a[0] == "post"]


@pytest.mark.django_db
class TestPolicyActionsPermissions:
    """The generic rules, for every custom action of a policy."""

    def _two_versions(self, tenant):
        policy = make_policy(tenant, definition=ALLOW_ALL)
        save_version(policy, REFUNDS_OVER_100)
        return policy

    @pytest.mark.parametrize(("method", "suffix", "body", "audit"), ACTIONS)
    def test_anonymous_is_401(self, world, api, method, suffix, body, audit):
        self._two_versions(world.acme)
        response = getattr(api(), method)(policy_url(suffix=suffix), body, format="json")
        assert_error_shape(response, 401)

    @pytest.mark.parametrize(("method", "suffix", "body", "audit"), ACTIONS)
    def test_admin_succeeds_and_writes_are_audited(self, world, api, method, suffix, body, audit):
        self._two_versions(world.acme)
        client = api(world.adam, world.acme)
        response = getattr(client, method)(policy_url(suffix=suffix), body, format="json")
        assert response.status_code in (200, 201), response.content
        if audit:
            assert audit_rows(world.acme, audit).exists()

    @pytest.mark.parametrize(("method", "suffix", "body", "audit"), ACTIONS)
    def test_viewer_reads_but_cannot_write(self, world, api, method, suffix, body, audit):
        self._two_versions(world.acme)
        client = api(world.bob, world.acme)
        before = audit_rows(world.acme, "permission.denied").count()
        response = getattr(client, method)(policy_url(suffix=suffix), body, format="json")
        if method == "get":
            assert response.status_code == 200, response.content
            return
        assert_error_shape(response, 403)
        assert audit_rows(world.acme, "permission.denied").count() == before + 1
        assert (
            not audit
            or not audit_rows(world.acme, audit)
            .exclude(action="permission.denied")
            .filter(actor_user=world.bob)
            .exists()
        )

    @pytest.mark.parametrize(("method", "suffix", "body", "audit"), ACTIONS)
    def test_other_tenants_policy_is_404(self, world, api, method, suffix, body, audit):
        self._two_versions(world.globex)
        client = api(world.alice, world.acme)
        response = getattr(client, method)(policy_url(suffix=suffix), body, format="json")
        assert_error_shape(response, 404)
        missing = getattr(client, method)(
            policy_url(slug="missing", suffix=suffix), body, format="json"
        )
        assert_error_shape(missing, 404)

    @pytest.mark.parametrize(("method", "suffix", "body", "audit"), WRITES)
    def test_read_scope_token_cannot_write(self, world, api, method, suffix, body, audit):
        self._two_versions(world.acme)
        client = api(world.alice, world.acme, scope="read")
        response = client.post(policy_url(suffix=suffix), body, format="json")
        assert_error_shape(response, 403)

    @pytest.mark.parametrize(
        ("suffix", "body", "attr"),
        [
            ("versions/", {"note": "no definition"}, "definition"),
            ("activate/", {"version": "two"}, "version"),
            ("activate/", {"version": 9}, "version"),
            ("mode/", {"mode": "sometimes"}, "mode"),
            ("simulate/", {"version": 2, "limit": 5001}, "limit"),
            ("simulate/", {"version": 9}, "version"),
            ("permissions/", {"username": "nobody"}, "username"),
            ("permissions/", {"username": "bob", "permission": "change"}, "permission"),
        ],
    )
    def test_bad_input_is_400_with_fields(self, world, api, suffix, body, attr):
        self._two_versions(world.acme)
        client = api(world.alice, world.acme)
        body = assert_error_shape(client.post(policy_url(suffix=suffix), body, format="json"), 400)
        assert body["type"] == "validation_error"
        assert attr in [e["attr"] for e in body["errors"]], body


# -- policies -----------------------------------------------------------------------------


@pytest.mark.django_db
class TestPolicyRules:
    def test_invalid_definition_lists_every_problem_under_its_path(self, world, api):
        definition = {
            "rules": [
                {"id": "bad-condition", "effect": "deny", "condition": "args.amount >"},
                {"id": "bad-effect", "effect": "maybe", "tools": ["risk:nuclear"]},
                {"id": "allow-with-approvers", "effect": "allow", "approvers": {"quorum": 2}},
                {"id": "bad-condition", "effect": "deny"},
            ],
            "surprise": True,
        }
        client = api(world.alice, world.acme)
        body = assert_error_shape(
            client.post(
                "/api/v1/t/acme/policies/",
                {"slug": "bad", "name": "Bad", "definition": definition},
                format="json",
            ),
            400,
        )
        attrs = {e["attr"] for e in body["errors"]}
        assert {
            "definition.rules[0].condition",
            "definition.rules[1].effect",
            "definition.rules[1].tools[0]",
            "definition.rules[2].approvers",
            "definition.rules[3].id",
            "definition",
        } <= attrs, attrs
        assert not Policy.objects.unscoped().filter(slug="bad").exists()
        # a draft is validated the same way and nothing is stored
        make_policy(world.acme)
        response = client.post(
            policy_url(suffix="versions/"), {"definition": definition}, format="json"
        )
        assert {e["attr"] for e in assert_error_shape(response, 400)["errors"]} == attrs
        assert PolicyVersion.objects.unscoped().filter(tenant=world.acme).count() == 1

    def test_definition_that_is_not_an_object_is_400(self, world, api):
        client = api(world.alice, world.acme)
        response = client.post(
            "/api/v1/t/acme/policies/",
            {"slug": "bad", "name": "Bad", "definition": ["rules"]},
            format="json",
        )
        assert_error_shape(response, 400, attr="definition")

    def test_create_and_retrieve(self, world, api):
        client = api(world.adam, world.acme)
        created = client.post(
            "/api/v1/t/acme/policies/",
            {
                "slug": "refunds",
                "name": "Refunds",
                "description": "Big refunds wait",
                "mode": "log_only",
                "definition": REFUNDS_OVER_100,
                "note": "first cut",
            },
            format="json",
        )
        assert created.status_code == 201, created.content
        body = created.json()
        assert body["slug"] == "refunds" and body["mode"] == "log_only"
        assert body["active_version"] == 1 and body["versions_count"] == 1
        assert body["has_draft"] is False and body["definition"] == REFUNDS_OVER_100
        detail = client.get("/api/v1/t/acme/policies/refunds/").json()
        assert detail == body
        version = client.get("/api/v1/t/acme/policies/refunds/versions/1/").json()
        assert version["note"] == "first cut" and version["created_by"] == "adam"
        assert version["state"] == "active"
        assert client.get("/api/v1/t/acme/policies/refunds/versions/7/").status_code == 404
        duplicate = client.post(
            "/api/v1/t/acme/policies/",
            {"slug": "refunds", "name": "Again", "definition": ALLOW_ALL},
            format="json",
        )
        assert_error_shape(duplicate, 400, attr="slug")

    def test_create_as_draft_applies_nothing(self, world, api):
        client = api(world.alice, world.acme)
        created = client.post(
            "/api/v1/t/acme/policies/",
            {"slug": "later", "name": "Later", "definition": REFUNDS_OVER_100, "activate": False},
            format="json",
        ).json()
        assert created["active_version"] is None and created["definition"] is None
        assert created["has_draft"] is True and created["latest_version"] == 1

    def test_list_filters_by_mode_and_search(self, world, api):
        make_policy(world.acme, slug="refunds", description="money back")
        make_policy(world.acme, slug="shadow", mode="log_only")
        make_policy(world.globex, slug="elsewhere")
        client = api(world.bob, world.acme)

        def slugs(query=""):
            response = client.get(f"/api/v1/t/acme/policies/{query}")
            assert response.status_code == 200, response.content
            return [p["slug"] for p in response.json()["results"]]

        assert slugs() == ["refunds", "shadow"]
        assert slugs("?mode=log_only") == ["shadow"]
        assert slugs("?q=MONEY") == ["refunds"]
        assert_error_shape(client.get("/api/v1/t/acme/policies/?mode=never"), 400, attr="mode")

    def test_draft_is_not_applied_until_activated_then_rolls_back(self, world, api):
        policy = make_policy(world.acme, definition=ALLOW_ALL)
        client = api(world.alice, world.acme)
        refund = PolicyRequest(
            tenant_id=world.acme.pk, action="call_tool", tool="refund", arguments={"amount": 500}
        )

        def effect():
            return decide(refund, load_policy_set(world.acme.pk, revision=-1)).effect

        drafted = client.post(
            policy_url(suffix="versions/"),
            {"definition": REFUNDS_OVER_100, "note": "refunds wait"},
            format="json",
        )
        assert drafted.status_code == 201, drafted.content
        assert drafted.json()["number"] == 2 and drafted.json()["state"] == "draft"
        detail = client.get(policy_url()).json()
        assert detail["active_version"] == 1 and detail["latest_version"] == 2
        assert detail["has_draft"] is True and detail["definition"] == ALLOW_ALL
        assert effect() == "allow"

        revision = type(world.acme).objects.get(pk=world.acme.pk).policy_revision
        activated = client.post(policy_url(suffix="activate/"), {"version": 2}, format="json")
        assert activated.status_code == 200, activated.content
        assert activated.json()["active_version"] == 2
        assert activated.json()["definition"] == REFUNDS_OVER_100
        assert effect() == "require_approval"
        assert type(world.acme).objects.get(pk=world.acme.pk).policy_revision > revision

        again = client.post(policy_url(suffix="activate/"), {"version": 2}, format="json")
        assert (
            "already active"
            in assert_error_shape(again, 400, attr="version")["errors"][0]["detail"]
        )

        rolled_back = client.post(policy_url(suffix="activate/"), {"version": 1}, format="json")
        assert rolled_back.status_code == 200 and rolled_back.json()["active_version"] == 1
        assert effect() == "allow"
        versions = client.get(policy_url(suffix="versions/")).json()
        states = {v["number"]: v["state"] for v in versions}
        assert states == {2: "previous", 1: "active"}
        row = audit_rows(world.acme, "policy.activate").order_by("-id").first()
        assert (row.before, row.after) == ({"version": 2}, {"version": 1})
        policy.refresh_from_db()
        assert policy.active_version.number == 1

    def test_mode_switch_and_patch(self, world, api):
        make_policy(world.acme)
        client = api(world.adam, world.acme)
        switched = client.post(policy_url(suffix="mode/"), {"mode": "log_only"}, format="json")
        assert switched.status_code == 200 and switched.json()["mode"] == "log_only"
        row = audit_rows(world.acme, "policy.mode").get()
        assert (row.before, row.after) == ({"mode": "enforce"}, {"mode": "log_only"})
        patched = client.patch(
            policy_url(), {"mode": "enforce", "name": "Guard rails", "slug": "rails"}, format="json"
        )
        assert patched.status_code == 200, patched.content
        body = patched.json()
        assert (body["mode"], body["name"], body["slug"]) == ("enforce", "Guard rails", "rails")
        assert audit_rows(world.acme, "policy.mode").count() == 2
        assert audit_rows(world.acme, "policy.update").exists()
        refused = client.patch(policy_url("rails"), {"definition": ALLOW_ALL}, format="json")
        assert (
            "versions/"
            in assert_error_shape(refused, 400, attr="definition")["errors"][0]["detail"]
        )
        make_policy(world.acme, slug="other")
        taken = client.patch(policy_url("rails"), {"slug": "other"}, format="json")
        assert_error_shape(taken, 400, attr="slug")
        assert client.put(policy_url("rails"), {"name": "x"}, format="json").status_code == 405

    def test_diff(self, world, api):
        first = {
            "rules": [{"id": "refunds", "effect": "deny", "tools": ["refund"]}],
            "budgets": {"run": {"cost_usd": 5}},
        }
        second = {
            "rules": [
                {"id": "refunds", "effect": "require_approval", "tools": ["refund"]},
                {"id": "wipe", "effect": "deny", "tools": ["risk:destructive"]},
            ],
            "budgets": {"run": {"cost_usd": 5}},
        }
        policy = make_policy(world.acme, definition=first)
        save_version(policy, second)
        client = api(world.bob, world.acme)
        diff = client.get(policy_url(suffix="diff/?from=1&to=2"))
        assert diff.status_code == 200, diff.content
        body = diff.json()
        assert (body["policy"], body["from_version"], body["to_version"]) == ("guard", 1, 2)
        assert body["changes"] == [
            {
                "path": "rules.refunds.effect",
                "change": "changed",
                "before": "deny",
                "after": "require_approval",
            },
            {
                "path": "rules.wipe",
                "change": "added",
                "before": None,
                "after": second["rules"][1],
            },
        ]
        # "to" defaults to the active version (1 here): nothing changed
        assert client.get(policy_url(suffix="diff/?from=1")).json()["changes"] == []
        assert_error_shape(client.get(policy_url(suffix="diff/")), 400, attr="from")
        assert_error_shape(client.get(policy_url(suffix="diff/?from=1&to=9")), 400, attr="to")

    def test_simulate_changes_exactly_the_refunds_over_100(self, world, api):
        make_policy(world.acme, definition=ALLOW_ALL)
        rows = {
            "refund-50": make_decision(world.acme, amount=50),
            "refund-150": make_decision(world.acme, amount=150),
            "refund-100": make_decision(world.acme, amount=100),
            "refund-101": make_decision(world.acme, amount=101),
            "lookup-999": make_decision(world.acme, tool="lookup", amount=999),
            "model": make_decision(world.acme, action="call_model", model="sim-1"),
            "refund-500": make_decision(world.acme, amount=500),
        }
        make_decision(world.globex, amount=1000)  # another tenant's calls are not replayed
        client = api(world.adam, world.acme)
        client.post(policy_url(suffix="versions/"), {"definition": REFUNDS_OVER_100}, format="json")
        decisions_before = PolicyDecision.objects.unscoped().count()

        response = client.post(policy_url(suffix="simulate/"), {"version": 2}, format="json")
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["version"], body["replayed"], body["changed"]) == (2, 7, 3)
        assert body["transitions"] == {"allow->allow": 4, "allow->require_approval": 3}
        changed = [c["decision"] for c in body["changes"]]
        expected = [rows[k].pk for k in ("refund-500", "refund-101", "refund-150")]
        assert changed == expected  # newest first
        first = body["changes"][0]
        assert first["arguments"] == {"amount": 500} and first["tool"] == "refund"
        assert (first["recorded"], first["before"], first["after"]) == (
            "allow",
            "allow",
            "require_approval",
        )
        assert first["rule"] == "refunds-over-100"

        # the last two decisions only; log-only would change no outcome
        latest = client.post(
            policy_url(suffix="simulate/"), {"version": 2, "limit": 2}, format="json"
        ).json()
        assert (latest["replayed"], latest["changed"]) == (2, 1)
        shadow = client.post(
            policy_url(suffix="simulate/"), {"version": 2, "mode": "log_only"}, format="json"
        ).json()
        assert (shadow["replayed"], shadow["changed"]) == (7, 0)
        # replaying the applied version changes nothing; simulating wrote nothing
        same = client.post(policy_url(suffix="simulate/"), {"version": 1}, format="json").json()
        assert same["changed"] == 0 and same["transitions"] == {"allow->allow": 7}
        assert PolicyDecision.objects.unscoped().count() == decisions_before
        assert Policy.objects.for_tenant(world.acme).get().active_version.number == 1

    def test_published_schema(self, client):
        response = client.get(reverse("api:policy-definition-schema"))
        assert response.status_code == 200
        schema = response.json()
        assert schema["title"] == "Policy definition" and "rules" in schema["properties"]

    def test_delete_removes_grants(self, world, api):
        policy = make_policy(world.acme)
        client = api(world.alice, world.acme)
        client.post(policy_url(suffix="permissions/"), {"username": "bob"}, format="json")
        assert client.delete(policy_url()).status_code == 204
        from guardian.models import UserObjectPermission

        assert not UserObjectPermission.objects.filter(object_pk=str(policy.pk)).exists()
        assert not Policy.objects.unscoped().filter(pk=policy.pk).exists()

    def test_the_default_policy_cannot_be_deleted(self, world, api):
        policy = make_policy(world.acme, slug="default", is_default=True)
        body = assert_error_shape(api(world.alice, world.acme).delete(policy_url("default")), 400)
        assert "switch it to log only" in body["errors"][0]["detail"]
        assert Policy.objects.for_tenant(world.acme).filter(pk=policy.pk).exists()
        assert not AuditEvent.objects.for_tenant(world.acme).filter(action="policy.delete").exists()


# -- decisions ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_decisions_list_filters_newest_first(world, api):
    policy = make_policy(world.acme, definition=REFUNDS_OVER_100)
    run = make_run(world.acme)
    small = make_decision(world.acme, amount=5, run=run)
    big = make_decision(
        world.acme,
        amount=500,
        run=run,
        effect="require_approval",
        policy=policy,
        policy_version=policy.active_version,
        rule="refunds-over-100",
    )
    lookup = make_decision(world.acme, tool="lookup", agent="triage")
    model = make_decision(world.acme, action="call_model", model="sim-1", effect="deny")
    make_decision(world.globex, amount=1)
    client = api(world.bob, world.acme)

    def ids(query=""):
        response = client.get(f"/api/v1/t/acme/policy-decisions/{query}")
        assert response.status_code == 200, response.content
        return [d["id"] for d in response.json()["results"]]

    assert ids() == [model.pk, lookup.pk, big.pk, small.pk]
    assert ids(f"?run={run.pk}") == [big.pk, small.pk]
    assert ids("?effect=require_approval") == [big.pk]
    assert ids("?action=call_model") == [model.pk]
    assert ids("?tool=refund") == [big.pk, small.pk]
    assert ids("?agent=triage") == [lookup.pk]
    assert ids("?policy=guard") == [big.pk]
    assert ids("?tool=refund&effect=allow") == [small.pk]

    detail = client.get(f"/api/v1/t/acme/policy-decisions/{big.pk}/").json()
    assert detail["policy"] == "guard" and detail["policy_version"] == 1
    assert detail["rule"] == "refunds-over-100" and detail["run"] == run.pk
    assert detail["inputs"]["arguments"] == {"amount": 500}

    first_page = client.get("/api/v1/t/acme/policy-decisions/?page_size=3").json()
    assert [d["id"] for d in first_page["results"]] == [model.pk, lookup.pk, big.pk]
    rest = client.get(first_page["next"]).json()
    assert [d["id"] for d in rest["results"]] == [small.pk] and rest["next"] is None
    bad = client.get("/api/v1/t/acme/policy-decisions/?effect=maybe")
    assert_error_shape(bad, 400, attr="effect")
    denied = client.post("/api/v1/t/acme/policy-decisions/", {}, format="json")
    assert_error_shape(denied, 405)


# -- approvals ----------------------------------------------------------------------------


def make_policy_approval(tenant, policy, quorum=1, role="admin") -> ApprovalRequest:
    run = make_run(tenant)
    with context.system_context("tests", tenant=tenant):
        return approval_services.approval_create(
            run=run,
            step_run=None,
            kind="policy",
            title="Refund 500 to Dana",
            policy=policy,
            rule="refunds-over-100",
            required_role=role,
            required_approvals=quorum,
        )


def decide_url(approval) -> str:
    return f"/api/v1/t/acme/approvals/{approval.pk}/decide/"


@pytest.mark.django_db
class TestApprovals:
    def test_quorum_of_two_and_one_vote_each(self, world, api):
        policy = make_policy(world.acme, definition=REFUNDS_OVER_100)
        approval = make_policy_approval(world.acme, policy, quorum=2)

        first = api(world.alice, world.acme).post(
            decide_url(approval), {"decision": "approve", "comment": "ok"}, format="json"
        )
        assert first.status_code == 200, first.content
        body = first.json()
        assert body["status"] == "pending"
        assert (body["required_approvals"], body["approve_votes"]) == (2, 1)
        assert body["policy"] == "guard" and body["rule"] == "refunds-over-100"
        assert [(v["user"], v["approve"], v["comment"]) for v in body["votes"]] == [
            ("alice", True, "ok")
        ]
        assert audit_rows(world.acme, "approval.vote").exists()

        twice = api(world.alice, world.acme).post(
            decide_url(approval), {"decision": "approve"}, format="json"
        )
        detail = assert_error_shape(twice, 400, attr="status")["errors"][0]["detail"]
        assert "already voted" in detail

        second = api(world.adam, world.acme).post(
            decide_url(approval), {"decision": "approve"}, format="json"
        )
        assert second.status_code == 200, second.content
        body = second.json()
        assert body["status"] == "approved" and body["approve_votes"] == 2
        assert body["decided_by"] == "adam"
        assert [v["user"] for v in body["votes"]] == ["alice", "adam"]
        assert audit_rows(world.acme, "approval.approved").exists()

        listed = api(world.bob, world.acme).get("/api/v1/t/acme/approvals/").json()["results"]
        assert listed[0]["id"] == approval.pk and len(listed[0]["votes"]) == 2

    def test_a_deny_decides_at_once(self, world, api):
        policy = make_policy(world.acme)
        approval = make_policy_approval(world.acme, policy, quorum=3)
        denied = api(world.alice, world.acme).post(
            decide_url(approval), {"decision": "deny", "comment": "no"}, format="json"
        )
        assert denied.status_code == 200 and denied.json()["status"] == "denied"

    def test_guardian_approver_without_the_role_may_decide(self, world, api):
        policy = make_policy(world.acme, definition=REFUNDS_OVER_100)
        approval = make_policy_approval(world.acme, policy)
        owner = api(world.alice, world.acme)

        before = audit_rows(world.acme, "permission.denied").count()
        refused = api(world.bob, world.acme).post(
            decide_url(approval), {"decision": "approve"}, format="json"
        )
        assert "admin role" in assert_error_shape(refused, 403)["errors"][0]["detail"]
        assert audit_rows(world.acme, "permission.denied").count() == before + 1
        assert not ApprovalVote.objects.for_tenant(world.acme).filter(approval=approval).exists()

        granted = owner.post(policy_url(suffix="permissions/"), {"username": "bob"}, format="json")
        assert granted.status_code == 201, granted.content
        assert granted.json() == [{"username": "bob", "permissions": ["approve_policy"]}]
        assert audit_rows(world.acme, "permission.grant").exists()
        assert owner.get(policy_url(suffix="permissions/")).json() == granted.json()

        # the grant is for deciding, not for a read-scope token
        read_only = api(world.bob, world.acme, scope="read").post(
            decide_url(approval), {"decision": "approve"}, format="json"
        )
        assert_error_shape(read_only, 403)

        decided = api(world.bob, world.acme).post(
            decide_url(approval), {"decision": "approve"}, format="json"
        )
        assert decided.status_code == 200, decided.content
        assert decided.json()["status"] == "approved" and decided.json()["decided_by"] == "bob"

        # a grant on another policy does not help, and a revoked grant is gone
        other = make_policy(world.acme, slug="other")
        second = make_policy_approval(world.acme, other)
        refused = api(world.bob, world.acme).post(
            decide_url(second), {"decision": "approve"}, format="json"
        )
        assert_error_shape(refused, 403)
        revoked = owner.delete(policy_url(suffix="permissions/?username=bob"))
        assert revoked.status_code == 204
        assert owner.get(policy_url(suffix="permissions/")).json() == []
        assert audit_rows(world.acme, "permission.revoke").exists()

    def test_viewer_and_operator_without_grant_cannot_decide(self, world, api):
        policy = make_policy(world.acme)
        approval = make_policy_approval(world.acme, policy)
        for user in (world.bob, world.oscar):
            response = api(user, world.acme).post(
                decide_url(approval), {"decision": "approve"}, format="json"
            )
            assert_error_shape(response, 403)
        assert ApprovalRequest.objects.unscoped().get(pk=approval.pk).status == "pending"

    def test_read_scope_token_cannot_decide_even_for_an_owner(self, world, api):
        approval = make_policy_approval(world.acme, make_policy(world.acme))
        response = api(world.alice, world.acme, scope="read").post(
            decide_url(approval), {"decision": "approve"}, format="json"
        )
        assert "read-scope" in assert_error_shape(response, 403)["errors"][0]["detail"]

    def test_grants_only_for_members(self, world, api):
        make_policy(world.acme)
        client = api(world.alice, world.acme)
        outsider = client.post(
            policy_url(suffix="permissions/"), {"username": "charlie"}, format="json"
        )
        assert_error_shape(outsider, 400, attr="username")
        UserFactory(username="drifter")
        stranger = client.post(
            policy_url(suffix="permissions/"), {"username": "drifter"}, format="json"
        )
        assert_error_shape(stranger, 400, attr="username")
        assert (
            not AuditEvent.objects.for_tenant(world.acme).filter(action="permission.grant").exists()
        )
