"""The dashboard pages of policies, their decisions, and policy approvals.

Every page gets the generic page tests of ``tests.dashboard.test_pages.TenantPageTests``
(anonymous, outsider, each role, key content, forged POST) and joins the dashboard URL
coverage; pages about one policy also prove that another tenant's policy is a 404. Then
the forms: create (a draft by default), the editor's errors under their path, drafts,
activation, rollback, the mode switch, delete, the diff, the simulation against
hand-computed expectations, the decisions list, and approvals that a policy asked for
(quorum, votes, the call, guardian approvers and the navigation's count).
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.urls import reverse

from controlplane import context
from controlplane.rbac.grants import grant_object_perm
from controlplane.tenancy.choices import Role
from policies import services
from policies.models import Policy, PolicyDecision, PolicyVersion
from runs.approvals import services as approval_services
from runs.approvals.choices import ApprovalKind
from runs.approvals.models import ApprovalRequest
from runs.models import StepRun
from tests.dashboard.test_pages import (
    NOT_FOUND_TEXT,
    TenantPageTests,
    client_for,
    messages_of,
    tenant_events,
    text,
)
from tests.dashboard.test_registry_pages import ForeignObjectChecks, field_errors
from tests.dashboard.test_run_pages import approval_url, decide_data, make_workflow, start_run

pytestmark = pytest.mark.django_db

REFUND_RULE = {
    "id": "big-refunds",
    "description": "Refunds above 100 need an admin",
    "effect": "require_approval",
    "actions": ["call_tool"],
    "tools": ["refund"],
    "condition": "args.amount > 100",
    "priority": 10,
}
DENY_SEARCH = {
    "id": "no-search",
    "effect": "deny",
    "actions": ["call_tool"],
    "tools": ["kb-search"],
}


def ensure_named_tools(tenant, definition: dict[str, Any]) -> None:
    """Register the tools a definition names (a policy may name only tools that exist)."""
    from agents.models import Tool
    from tests.agents.registry_factories import make_tool

    named = {
        name
        for rule in definition.get("rules") or ()
        for name in rule.get("tools") or ()
        if not name.startswith(("tag:", "risk:"))
    }
    existing = set(Tool.objects.for_tenant(tenant).values_list("slug", flat=True))
    for slug in sorted(named - existing):
        make_tool(tenant, slug=slug)


def make_policy(
    tenant,
    slug: str = "refund-guard",
    definition: dict[str, Any] | None = None,
    *,
    activate: bool = True,
    **fields: Any,
) -> Policy:
    definition = definition if definition is not None else {"rules": [REFUND_RULE]}
    ensure_named_tools(tenant, definition)
    with context.system_context("tests", tenant=tenant):
        return services.policy_create(
            tenant=tenant,
            slug=slug,
            name=fields.pop("name", "Refund guard"),
            definition=definition,
            activate=activate,
            **fields,
        )


def save_draft(policy: Policy, definition: dict[str, Any], note: str = "") -> PolicyVersion:
    ensure_named_tools(policy.tenant, definition)
    with context.system_context("tests", tenant=policy.tenant):
        return services.policy_save_version(policy=policy, definition=definition, note=note)


def record(tenant, *, run=None, action="call_tool", tool="", agent="", args=None, effect="allow"):
    """A stored decision with the inputs a replay needs, as the engine records it."""
    return PolicyDecision.objects.for_tenant(tenant).create(
        tenant=tenant,
        run=run,
        step_key="pay" if run else "",
        action=action,
        agent=agent,
        tool=tool,
        effect=effect,
        reason="no rule matched: allowed by default",
        inputs_hash=f"hash-{action}-{tool}-{agent}",
        inputs={
            "action": action,
            "agent": agent,
            "agent_tags": [],
            "tool": tool,
            "tool_tags": [],
            "risk": "write" if tool else "",
            "model": "",
            "arguments": args or {},
            "run_input": {},
            "spend": {},
        },
    )


def url(name: str, tenant: str = "acme", **kwargs: Any) -> str:
    return reverse(f"dashboard:{name}", kwargs={"tenant": tenant, **kwargs})


def detail_url(policy: Policy) -> str:
    return url("policy-detail", tenant=policy.tenant.slug, slug=policy.slug)


def fresh(policy: Policy) -> Policy:
    return (
        Policy.objects.for_tenant(policy.tenant_id)
        .select_related("active_version")
        .get(pk=policy.pk)
    )


def create_data(**values: Any) -> dict[str, str]:
    data = {
        "slug": "refund-guard",
        "name": "Refund guard",
        "description": "",
        "mode": "enforce",
        "definition": '{"rules": [{"id": "big-refunds", "effect": "require_approval", '
        '"tools": ["refund"], "condition": "args.amount > 100"}]}',
        "note": "",
    }
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}


# generic page tests ------------------------------------------------------------------------


class TestPolicyListPage(TenantPageTests):
    url_name = "policies"
    permission = "policies.view_policy"

    def prepare(self, world):
        make_policy(world.acme, is_default=True, description="Big refunds wait for an admin.")
        make_policy(world.acme, slug="draft-only", name="Draft only", activate=False)
        make_policy(world.globex, slug="globex-secret", name="Globex secret")
        return (
            [
                "Refund guard",
                "<code>refund-guard</code>",
                '<span class="badge default">default</span>',
                '<span class="badge mode mode-enforce">enforce</span>',
                "Big refunds wait for an admin.",
                '<td data-label="Rules">1</td>',
                "(draft v1 not active)",
                'href="/t/acme/policies/decisions/"',
            ],
            ["globex-secret", "Globex secret", "New policy"],
        )


class TestPolicyCreatePage(TenantPageTests):
    url_name = "policy-create"
    permission = "policies.add_policy"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "policies.add_policy"

    def prepare(self, world):
        return (
            [
                "New policy",
                'name="activate"',
                "args.amount &gt; 100",
                "Leave it off to keep v1 a draft",
                "<code>spend</code>",  # the condition variables
            ],
            ['name="activate" checked'],
        )

    def forged_post(self, world):
        return create_data(slug="forged")

    def written(self, world):
        return sorted(Policy.objects.for_tenant(world.acme).values_list("slug", flat=True))


class TestPolicyDetailPage(ForeignObjectChecks, TenantPageTests):
    url_name = "policy-detail"
    permission = "policies.view_policy"
    write_role = Role.ADMIN
    write_permission = "policies.change_policy"

    def url_kwargs(self, world):
        self.policy = make_policy(world.acme)
        save_draft(self.policy, {"rules": [REFUND_RULE, DENY_SEARCH]}, note="deny search")
        return {"slug": self.policy.slug}

    def foreign_url_kwargs(self, world):
        return {"slug": make_policy(world.globex, slug="globex-guard").slug}

    def prepare(self, world):
        return (
            [
                '<tr id="rule-big-refunds">',
                "<code>args.amount &gt; 100</code>",
                '<span class="badge effect-require_approval">require_approval</span>',
                "<code>refund</code>",
                "Rules of v1 (active)",
                '<span class="badge draft">draft</span>',
                "deny search",
            ],
            [
                "Save v3 as draft",
                "Switch to log only",
                "Activate v2",
                "Delete policy",
                'name="op"',
                "globex-guard",
                "/simulate/",
            ],
        )

    def forged_post(self, world):
        return {"op": "mode", "mode": "log_only"}

    def written(self, world):
        return Policy.objects.for_tenant(world.acme).get(slug="refund-guard").mode


class TestPolicySimulatePage(TenantPageTests):
    url_name = "policy-simulate"
    permission = "policies.change_policy"
    read_role = Role.ADMIN

    def url_kwargs(self, world):
        make_policy(world.acme)
        return {"slug": "refund-guard"}

    def prepare(self, world):
        return (["Run simulation", '<option value="1" selected>v1</option>', 'value="200"'], [])

    def forged_post(self, world):
        return {"version": "1", "limit": "10"}

    def written(self, world):
        return Policy.objects.for_tenant(world.acme).count()

    def test_another_tenants_policy_is_404(self, world):
        make_policy(world.globex, slug="globex-guard")
        theirs = url("policy-simulate", tenant="globex", slug="globex-guard")
        assert client_for(world.charlie).get(theirs).status_code == 200
        response = client_for(world.alice).get(url("policy-simulate", slug="globex-guard"))
        assert response.status_code == 404
        assert NOT_FOUND_TEXT in text(response)


class TestDecisionListPage(TenantPageTests):
    url_name = "policy-decisions"
    permission = "policies.view_policydecision"

    def prepare(self, world):
        run = start_run(world.acme, make_workflow(world.acme))
        record(world.acme, run=run, tool="refund", agent="payer", args={"amount": 150})
        record(world.globex, tool="globex-tool")
        return (
            [
                f'href="/t/acme/runs/{run.pk}/">#{run.pk}</a>',
                "<code>refund</code>",
                "<code>payer</code>",
                '<span class="badge effect-allow">allow</span>',
                'aria-label="Filter decisions"',
            ],
            ["globex-tool"],
        )

    def forged_post(self, world):
        return {"effect": "deny"}

    def written(self, world):
        return PolicyDecision.objects.for_tenant(world.acme).count()


# create ------------------------------------------------------------------------------------


class TestPolicyCreate:
    def test_v1_stays_a_draft_by_default(self, world):
        adam = client_for(world.adam)
        response = adam.post(url("policy-create"), create_data())
        assert response.status_code == 302
        assert response["Location"] == "/t/acme/policies/refund-guard/"
        policy = Policy.objects.for_tenant(world.acme).get(slug="refund-guard")
        assert policy.active_version is None
        [version] = PolicyVersion.objects.for_tenant(world.acme).filter(policy=policy)
        assert (version.number, version.created_by) == (1, world.adam)
        assert version.definition["rules"][0]["condition"] == "args.amount > 100"
        event = tenant_events(world.acme, "policy.create").get()
        assert event.after["active"] is False
        page = adam.get(response["Location"])
        body = text(page)
        assert "v1 is a draft. Simulate it against recorded decisions" in " ".join(
            messages_of(page)
        )
        assert 'id="no-active"' in body
        assert "Activate v1" in body

    def test_activate_now_applies_v1(self, world):
        response = client_for(world.adam).post(
            url("policy-create"), create_data(activate="on", mode="log_only")
        )
        assert response.status_code == 302
        policy = fresh(Policy.objects.for_tenant(world.acme).get(slug="refund-guard"))
        assert policy.active_version.number == 1
        assert policy.mode == "log_only"

    def test_condition_errors_are_shown_under_their_path(self, world):
        definition = (
            '{"rules": [{"id": "ok", "effect": "allow"}, '
            '{"id": "bad", "effect": "deny", "condition": "foo > 1"}, '
            '{"id": "ok", "effect": "maybe"}]}'
        )
        response = client_for(world.adam).post(
            url("policy-create"), create_data(definition=definition)
        )
        assert response.status_code == 400
        errors = field_errors(text(response), "definition")
        assert any(e.startswith("rules[1].condition: Unknown variable foo") for e in errors), errors
        assert any(e.startswith("rules[2].effect: 'maybe' is not one of") for e in errors), errors
        assert "rules[2].id: Rule id 'ok' is already used by rules[0]." in errors
        assert "Nothing was saved." in text(response)
        assert not Policy.objects.for_tenant(world.acme).exists()

    def test_json_and_slug_problems_are_field_errors(self, world):
        client = client_for(world.adam)
        broken = client.post(url("policy-create"), create_data(definition="{nope"))
        assert broken.status_code == 400
        assert field_errors(text(broken), "definition")[0].startswith("This is not valid JSON")
        reserved = client.post(url("policy-create"), create_data(slug="decisions"))
        assert reserved.status_code == 400
        assert "names a page of its own" in field_errors(text(reserved), "slug")[0]
        make_policy(world.acme)
        taken = client.post(url("policy-create"), create_data())
        assert taken.status_code == 400
        assert field_errors(text(taken), "slug") == [
            "Policy 'refund-guard' already exists in this tenant."
        ]

    def test_the_example_names_a_write_tool_of_the_tenant(self, world):
        from tests.agents.registry_factories import make_tool

        make_tool(world.acme, slug="pay-out", builtin="ticket_update", risk="destructive")
        body = text(client_for(world.adam).get(url("policy-create")))
        assert "&quot;pay-out&quot;" in body


# the editor, versions, activation ----------------------------------------------------------


class TestPolicyEditor:
    def test_a_new_version_is_a_draft(self, world):
        policy = make_policy(world.acme)
        definition = '{"rules": [{"id": "big-refunds", "effect": "deny", "tools": ["refund"]}]}'
        response = client_for(world.adam).post(
            detail_url(policy), {"op": "save", "definition": definition, "note": "stricter"}
        )
        assert response.status_code == 302
        assert response["Location"] == f"{detail_url(policy)}#versions"
        policy = fresh(policy)
        assert policy.active_version.number == 1  # nothing applies until activated
        v2 = PolicyVersion.objects.for_tenant(world.acme).get(policy=policy, number=2)
        assert (v2.note, v2.created_by, v2.activated_at) == ("stricter", world.adam, None)
        event = tenant_events(world.acme, "policy.version").get()
        assert event.after == {"version": 2, "rules": 1}
        body = text(client_for(world.adam).get(detail_url(policy)))
        assert re.search(
            r'<tr id="version-2">\s*<td>v2 <span class="badge draft">draft</span>', body
        )
        assert "<code>spend</code>" in body  # the editor's help names the condition variables
        assert "Save v3 as draft" in body
        assert "Activate v2" in body

    def test_the_editor_starts_from_the_newest_version_in_writing_order(self, world):
        policy = make_policy(world.acme)
        save_draft(
            policy, {"rules": [{**REFUND_RULE, "approvers": {"quorum": 2, "role": "admin"}}]}
        )
        body = html.unescape(text(client_for(world.adam).get(detail_url(policy))))
        editor = body[body.index('name="definition"') :]
        editor = editor[: editor.index("</textarea>")]
        keys = re.findall(r'^\s*"(\w+)":', editor, re.M)
        assert keys == [
            "rules",
            "id",
            "description",
            "effect",
            "actions",
            "tools",
            "condition",
            "priority",
            "approvers",
            "role",
            "quorum",
        ]
        assert "Save v3 as draft" in body and "Starts from v2." in body

    def test_errors_are_shown_inline_and_nothing_is_saved(self, world):
        policy = make_policy(world.acme)
        definition = (
            '{"rules": [{"id": "r", "effect": "deny", "condition": "foo.bar == 1", '
            '"tools": ["risk:fatal"]}], "extra": 1}'
        )
        response = client_for(world.adam).post(
            detail_url(policy), {"op": "save", "definition": definition}
        )
        assert response.status_code == 400
        body = text(response)
        errors = field_errors(body, "definition")
        assert any(
            e.startswith("rules[0].condition: Unknown variable foo: a condition may use")
            for e in errors
        ), errors
        assert "rules[0].tools[0]: Unknown risk 'fatal': use read, write or destructive." in errors
        assert any("'extra' was unexpected" in e for e in errors), errors
        # the text typed is kept for correcting
        assert html.escape('"foo.bar == 1"', quote=True) in body or "foo.bar == 1" in body
        assert PolicyVersion.objects.for_tenant(world.acme).filter(policy=policy).count() == 1
        assert not tenant_events(world.acme, "policy.version").exists()

    def test_activate_a_draft_then_roll_back(self, world):
        policy = make_policy(world.acme)
        save_draft(policy, {"rules": [REFUND_RULE, DENY_SEARCH]})
        client = client_for(world.adam)
        body = text(client.get(detail_url(policy)))
        assert 'data-confirm="Activate v2 of refund-guard? Its rules apply from the next' in body

        activated = client.post(detail_url(policy), {"op": "activate", "version": "2"})
        assert activated.status_code == 302
        assert fresh(policy).active_version.number == 2
        event = tenant_events(world.acme, "policy.activate").get()
        assert (event.before, event.after) == ({"version": 1}, {"version": 2})
        page = client.get(detail_url(policy))
        assert "Activated v2; it applies from the next decision." in messages_of(page)
        assert "Roll back to v1" in text(page)
        assert '<tr id="rule-no-search">' in text(page)

        rolled = client.post(detail_url(policy), {"op": "rollback", "version": "1"})
        assert rolled.status_code == 302
        assert fresh(policy).active_version.number == 1
        page = client.get(detail_url(policy))
        assert "Rolled back to v1 (v2 no longer applies)." in messages_of(page)
        assert '<tr id="rule-no-search">' not in text(page)
        assert tenant_events(world.acme, "policy.activate").count() == 2

    def test_activating_the_active_version_or_a_missing_one_changes_nothing(self, world):
        policy = make_policy(world.acme)
        client = client_for(world.adam)
        client.post(detail_url(policy), {"op": "activate", "version": "1"})
        assert "Nothing changed: Version 1 is already active." in messages_of(
            client.get(detail_url(policy))
        )
        client.post(detail_url(policy), {"op": "activate", "version": "9"})
        assert "Choose a version of this policy to activate." in messages_of(
            client.get(detail_url(policy))
        )
        other = make_policy(world.acme, slug="other", definition={"rules": [DENY_SEARCH]})
        save_draft(other, {"rules": []})
        client.post(detail_url(policy), {"op": "activate", "version": "2"})  # other's v2
        assert fresh(policy).active_version.number == 1
        assert not tenant_events(world.acme, "policy.activate").exists()

    def test_mode_switch_both_ways(self, world):
        policy = make_policy(world.acme)
        client = client_for(world.adam)
        body = text(client.get(detail_url(policy)))
        assert 'data-confirm="Switch refund-guard to log only?' in body
        client.post(detail_url(policy), {"op": "mode", "mode": "log_only"})
        assert fresh(policy).mode == "log_only"
        event = tenant_events(world.acme, "policy.mode").get()
        assert (event.before, event.after) == ({"mode": "enforce"}, {"mode": "log_only"})
        page = client.get(detail_url(policy))
        assert any("Switched to log only" in m for m in messages_of(page))
        assert '<span class="badge mode mode-log_only">log only</span>' in text(page)
        assert "Switch to enforce" in text(page)
        client.post(detail_url(policy), {"op": "mode", "mode": "enforce"})
        assert fresh(policy).mode == "enforce"
        client.post(detail_url(policy), {"op": "mode", "mode": "enforce"})
        assert tenant_events(world.acme, "policy.mode").count() == 2
        client.post(detail_url(policy), {"op": "mode", "mode": "off"})
        assert fresh(policy).mode == "enforce"

    def test_delete_is_confirmed_and_audited(self, world):
        policy = make_policy(world.acme)
        client = client_for(world.adam)
        assert 'data-confirm="Delete the policy refund-guard' in text(
            client.get(detail_url(policy))
        )
        response = client.post(detail_url(policy), {"op": "delete"})
        assert response.status_code == 302
        assert response["Location"] == "/t/acme/policies/"
        assert not Policy.objects.for_tenant(world.acme).exists()
        assert tenant_events(world.acme, "policy.delete").count() == 1
        assert "Policy “refund-guard” deleted; its rules no longer apply." in messages_of(
            client.get(response["Location"])
        )

    def test_the_default_policy_offers_log_only_not_delete(self, world):
        policy = make_policy(world.acme, slug="default", is_default=True)
        client = client_for(world.alice)
        body = text(client.get(detail_url(policy)))
        assert "Delete policy" not in body
        assert "The default policy cannot be deleted" in body and "log only" in body
        response = client.post(detail_url(policy), {"op": "delete"})
        assert response.status_code == 302
        assert Policy.objects.for_tenant(world.acme).filter(pk=policy.pk).exists()
        assert any("cannot be deleted" in m for m in messages_of(client.get(response["Location"])))

    def test_operator_cannot_save_activate_or_delete(self, world):
        policy = make_policy(world.acme)
        save_draft(policy, {"rules": []})
        oscar = client_for(world.oscar)
        body = text(oscar.get(detail_url(policy)))
        assert 'name="op"' not in body and "/simulate/" not in body
        for data in (
            {"op": "save", "definition": '{"rules": []}'},
            {"op": "activate", "version": "2"},
            {"op": "delete"},
        ):
            assert oscar.post(detail_url(policy), data).status_code == 403
        policy = fresh(policy)
        assert policy.active_version.number == 1
        assert PolicyVersion.objects.for_tenant(world.acme).filter(policy=policy).count() == 2

    def test_diff_between_any_two_versions(self, world):
        policy = make_policy(world.acme)
        changed = {**REFUND_RULE, "condition": "args.amount > 500"}
        save_draft(policy, {"rules": [changed, DENY_SEARCH]})
        save_draft(policy, {"rules": [changed]})
        client = client_for(world.bob)  # reading history is for every role
        body = text(client.get(f"{detail_url(policy)}?from=1&to=2"))
        assert "Changes from v1 to v2" in body
        assert "<code>rules.big-refunds.condition</code>" in body
        assert "&quot;args.amount &gt; 100&quot;" in body
        assert "&quot;args.amount &gt; 500&quot;" in body
        assert "<code>rules.no-search</code>" in body
        same = text(client.get(f"{detail_url(policy)}?from=2&to=2"))
        assert "v2 and v2 have the same definition." in same
        older = text(client.get(f"{detail_url(policy)}?from=3&to=2"))
        assert '<span class="badge change-added">added</span>' in older
        bad = client.get(f"{detail_url(policy)}?from=7&to=2")
        assert bad.status_code == 200 and "Changes from" not in text(bad)


# simulation --------------------------------------------------------------------------------


class TestSimulation:
    @pytest.fixture
    def recorded(self, world):
        run = start_run(world.acme, make_workflow(world.acme))
        rows = {
            "small": record(world.acme, run=run, tool="refund", agent="payer", args={"amount": 50}),
            "large": record(
                world.acme, run=run, tool="refund", agent="payer", args={"amount": 150}
            ),
            "search": record(world.acme, run=run, tool="kb-search", args={"query": "x"}),
            "agent": record(world.acme, run=run, action="invoke_agent", agent="payer"),
        }
        record(world.globex, tool="refund", args={"amount": 900})  # another tenant's: unseen
        return run, rows

    def simulate(self, world, policy, **params):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return client_for(world.adam).get(f"{url('policy-simulate', slug=policy.slug)}?{query}")

    def test_counts_and_changed_decisions_against_a_draft(self, world, recorded):
        run, rows = recorded
        policy = make_policy(world.acme, definition={"rules": []}, activate=False)
        save_draft(policy, {"rules": [REFUND_RULE, DENY_SEARCH]})
        response = self.simulate(world, policy, version=2, limit=200)
        assert response.status_code == 200
        body = text(response)
        assert "v2 against 4 recorded decisions" in body
        assert "<strong>2 decisions would change</strong>" in body
        counts = dict(
            re.findall(
                r'<tr id="transition-([a-z_]+-[a-z_]+)"[^>]*>.*?<td data-label="Decisions">'
                r"(\d+)</td>",
                body,
            )
        )
        assert counts == {"allow-allow": "2", "allow-require_approval": "1", "allow-deny": "1"}
        changed = re.findall(r'<tr id="change-(\d+)">', body)
        assert sorted(map(int, changed)) == sorted([rows["large"].pk, rows["search"].pk])
        large = body[body.index(f'<tr id="change-{rows["large"].pk}">') :]
        large = large[: large.index("</tr>")]
        assert f'href="/t/acme/runs/{run.pk}/">#{run.pk}</a>' in large
        assert "<code>call_tool</code>" in large and "<code>payer</code>" in large
        assert "<code>refund</code>" in large
        assert "&quot;amount&quot;: 150" in large
        assert '<span class="badge effect-allow">allow</span>' in large
        assert '<span class="badge effect-require_approval">require_approval</span>' in large
        assert "<code>big-refunds</code>" in large
        search = body[body.index(f'<tr id="change-{rows["search"].pk}">') :]
        assert '<span class="badge effect-deny">deny</span>' in search[: search.index("</tr>")]
        assert "Activate v2" in body  # a draft: activate it from here
        # a simulation changes nothing
        assert fresh(policy).active_version is None
        assert PolicyDecision.objects.for_tenant(world.acme).count() == 4

    def test_before_is_what_applies_now(self, world, recorded):
        # v1 (active) already holds big refunds: only the deny of v2 changes anything
        policy = make_policy(world.acme)
        save_draft(policy, {"rules": [REFUND_RULE, DENY_SEARCH]})
        body = text(self.simulate(world, policy, version=2, limit=200))
        assert "<strong>1 decision would change</strong>" in body
        assert '<tr id="transition-require_approval-require_approval"' in body
        # v1 against itself: nothing changes, and no activate button for the active version
        same = text(self.simulate(world, policy, version=1, limit=200))
        assert "No decision would change" in same
        assert "Activate v1" not in same

    def test_limit_takes_the_newest_decisions(self, world, recorded):
        policy = make_policy(world.acme, definition={"rules": []}, activate=False)
        save_draft(policy, {"rules": [REFUND_RULE, DENY_SEARCH]})
        body = text(self.simulate(world, policy, version=2, limit=2))
        # the two newest: the search (allow -> deny) and the agent invocation (unchanged)
        assert "v2 against 2 recorded decisions" in body
        assert "<strong>1 decision would change</strong>" in body

    def test_invalid_parameters_are_explained(self, world, recorded):
        policy = make_policy(world.acme)
        response = self.simulate(world, policy, version=9, limit=0)
        assert response.status_code == 200
        body = text(response)
        assert "Select a valid choice." in body
        assert "Ensure this value is greater than or equal to 1." in body
        assert 'id="simulation"' not in body

    def test_no_recorded_decisions_says_so(self, world):
        policy = make_policy(world.acme)
        body = text(self.simulate(world, policy, version=1, limit=200))
        assert "No decisions are recorded in this tenant yet" in body
        assert "v1 against 0 recorded decisions" in body


# decisions ---------------------------------------------------------------------------------


class TestDecisionList:
    def test_filters(self, world):
        policy = make_policy(world.acme)
        record(world.acme, tool="refund", args={"amount": 1})
        denied = record(world.acme, tool="kb-search", effect="deny")
        agent = record(world.acme, action="invoke_agent", agent="payer")
        PolicyDecision.objects.for_tenant(world.acme).filter(pk=denied.pk).update(
            policy=policy, policy_version=policy.active_version, rule="no-search"
        )
        client = client_for(world.bob)

        def ids(query: str) -> list[int]:
            response = client.get(f"{url('policy-decisions')}?{query}")
            assert response.status_code == 200
            return [int(i) for i in re.findall(r'<tr id="decision-(\d+)">', text(response))]

        assert len(ids("")) == 3
        assert ids("effect=deny") == [denied.pk]
        assert ids("action=invoke_agent") == [agent.pk]
        assert ids("tool=kb-search") == [denied.pk]
        assert ids("policy=refund-guard") == [denied.pk]
        assert ids("tool=nothing") == []
        assert "No decisions match these filters." in text(
            client.get(f"{url('policy-decisions')}?tool=nothing")
        )
        invalid = client.get(f"{url('policy-decisions')}?effect=maybe")
        assert invalid.status_code == 200
        assert "Select a valid choice." in text(invalid)
        body = text(client.get(url("policy-decisions")))
        assert 'href="/t/acme/policies/refund-guard/">refund-guard</a> v1' in body

    def test_pagination_keeps_the_filter(self, world):
        for _ in range(51):
            record(world.acme, tool="refund")
        record(world.acme, tool="other")
        client = client_for(world.bob)
        first = text(client.get(f"{url('policy-decisions')}?tool=refund"))
        assert first.count('<tr id="decision-') == 50
        assert "Page 1 of 2" in first
        assert 'href="?tool=refund&amp;page=2"' in first
        second = text(client.get(f"{url('policy-decisions')}?tool=refund&page=2"))
        assert second.count('<tr id="decision-') == 1

    def test_empty_state(self, world):
        body = text(client_for(world.bob).get(url("policy-decisions")))
        assert "No decisions recorded yet." in body
        assert 'aria-label="Filter decisions"' not in body


# approvals a policy asked for ---------------------------------------------------------------


def policy_approval(world, *, quorum: int = 1, role: str = "admin") -> ApprovalRequest:
    """What the engine opens when a rule holds a tool call: kind policy, the call's details."""
    policy = make_policy(world.acme)
    run = start_run(world.acme, make_workflow(world.acme))
    step = StepRun.objects.for_tenant(world.acme).get(run=run, step_key="check")
    with context.system_context("tests", tenant=world.acme):
        return approval_services.approval_create(
            run=run,
            step_run=step,
            kind=ApprovalKind.POLICY,
            title="Approve: payer wants to call tool 'refund'",
            details={
                "action": "call_tool",
                "agent": "payer",
                "tool": "refund",
                "model": None,
                "arguments": {"amount": 150, "currency": "EUR"},
                "reason": "rule big-refunds: args.amount > 100",
                "rule": "big-refunds",
                "policy": policy.slug,
            },
            required_role=role,
            required_approvals=quorum,
            policy=policy,
            rule="big-refunds",
            inputs_hash="abc",
        )


def nav_count(body: str) -> int:
    match = re.search(r'<span class="count" id="nav-approvals-count">(\d+)', body)
    return int(match.group(1)) if match else 0


class TestPolicyApprovals:
    def test_the_card_shows_the_policy_the_call_and_the_quorum(self, world):
        approval = policy_approval(world, quorum=2)
        body = text(client_for(world.adam).get(approval_url(approval)))
        assert (
            'policy <a href="/t/acme/policies/refund-guard/">Refund guard</a> '
            "(<code>refund-guard</code>), rule <code>big-refunds</code>"
        ) in body
        assert "<code>call_tool</code> <code>refund</code> by agent <code>payer</code>" in body
        assert "&quot;amount&quot;: 150" in body
        assert "rule big-refunds: args.amount &gt; 100" in body
        assert f'<dd class="quorum" id="approval-{approval.pk}-quorum">0 of 2 approvals</dd>' in (
            body
        )
        assert "or a member granted approval on the policy" in body

    def test_quorum_progress_and_votes(self, world):
        approval = policy_approval(world, quorum=2)
        adam = client_for(world.adam)
        response = adam.post(approval_url(approval), decide_data(approval, "approve", "ok by me"))
        assert response.status_code == 302
        approval.refresh_from_db()
        assert approval.status == "pending"
        body = text(adam.get(approval_url(approval)))
        assert f'id="approval-{approval.pk}-quorum">1 of 2 approvals</dd>' in body
        votes = body[body.index(f'id="approval-{approval.pk}-votes"') :]
        assert "approved</span> by adam" in votes and "“ok by me”" in votes
        # adam voted: no second form for him, a note instead
        assert "You voted on this request. It needs 2 approvals" in body
        assert 'value="approve"' not in body
        # alice's approval completes the quorum
        alice = client_for(world.alice)
        assert 'value="approve"' in text(alice.get(approval_url(approval)))
        alice.post(approval_url(approval), decide_data(approval, "approve", "second"))
        approval.refresh_from_db()
        assert (approval.status, approval.decided_by) == ("approved", world.alice)
        done = text(alice.get(approval_url(approval)))
        assert f'id="approval-{approval.pk}-quorum">2 of 2 approvals</dd>' in done
        assert "approved</span> by alice" in done

    def test_a_guardian_approver_sees_and_decides_it(self, world):
        approval = policy_approval(world)
        bob = client_for(world.bob)  # a viewer: no role to decide an admin request
        body = text(bob.get(approval_url(approval)))
        assert "Your role (viewer) cannot decide it." in body
        assert nav_count(body) == 0
        assert bob.post(approval_url(approval), decide_data(approval, "approve")).status_code == 403

        grant_object_perm(user=world.bob, perm="policies.approve_policy", obj=approval.policy)
        body = text(bob.get(approval_url(approval)))
        assert 'value="approve"' in body
        assert nav_count(body) == 1
        inbox = text(bob.get(url("approvals")))
        assert '<strong id="mine-count">1 pending request waits for your decision.</strong>' in (
            inbox
        )
        policy_page = text(bob.get(detail_url(approval.policy)))
        assert '<dd id="policy-approvers"><span class="tag">bob</span>' in policy_page
        response = bob.post(approval_url(approval), decide_data(approval, "approve", "granted"))
        assert response.status_code == 302
        approval.refresh_from_db()
        assert (approval.status, approval.decided_by) == ("approved", world.bob)
        assert nav_count(text(bob.get(url("approvals")))) == 0

    def test_the_count_is_what_each_member_may_decide(self, world):
        policy_approval(world)  # needs an admin
        operator_request = policy_approval_for_role(world, "operator")
        assert nav_count(text(client_for(world.alice).get(url("policies")))) == 2
        assert nav_count(text(client_for(world.oscar).get(url("policies")))) == 1
        assert nav_count(text(client_for(world.bob).get(url("policies")))) == 0
        # a grant on another tenant's policy never counts here
        globex_policy = make_policy(world.globex, slug="globex-guard")
        with pytest.raises(ValueError):
            grant_object_perm(user=world.bob, perm="policies.approve_policy", obj=globex_policy)
        assert operator_request.required_role == "operator"


def policy_approval_for_role(world, role: str) -> ApprovalRequest:
    run = start_run(world.acme, make_workflow(world.acme, slug=f"flow-{role}"))
    step = StepRun.objects.for_tenant(world.acme).get(run=run, step_key="check")
    with context.system_context("tests", tenant=world.acme):
        return approval_services.approval_create(
            run=run,
            step_run=step,
            kind=ApprovalKind.POLICY,
            title=f"Approve as {role}",
            details={"action": "call_tool", "tool": "refund", "arguments": {"amount": 1}},
            required_role=role,
            rule="r",
            inputs_hash=role,
        )


def test_the_navigation_links_policies_for_every_role(world):
    for role in (Role.VIEWER, Role.OWNER):
        body = text(client_for(world.user_with_role(role)).get(url("overview")))
        assert re.search(r'<a href="/t/acme/policies/"\s*>Policies</a>', body), role
    # on a policy's page the entry is marked as the current section
    policy = make_policy(world.acme)
    body = text(client_for(world.bob).get(detail_url(policy)))
    assert '<a href="/t/acme/policies/" aria-current="true">Policies</a>' in body
