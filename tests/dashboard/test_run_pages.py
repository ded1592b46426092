"""The dashboard pages of workflows, runs and approvals.

Every page gets the generic page tests of ``test_pages.TenantPageTests`` (anonymous,
outsider, each role, key content, forged POST) and pages about one object prove that
another tenant's object is a 404 for GET and POST. Then the forms: a definition with
path-keyed errors that saves nothing, the start form generated from the input schema
(field errors, nothing started), the live fragment of a run page, cancel, resume, rerun,
approve and deny (with "already decided" and "your role cannot decide"), and a viewer who
sees no action and whose forged POSTs are audited 403s.

No worker runs here: test transactions never commit, so nothing is dispatched. A run
"waiting for approval" is put in that state the way the approval step does it.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from controlplane import context
from controlplane.rbac.access import resolve_access
from controlplane.tenancy.choices import Role
from runs import services, workflow_services
from runs.approvals.models import ApprovalRequest
from runs.approvals.services import approval_create, approval_decide
from runs.choices import RunStatus, StepStatus
from runs.events import emit
from runs.models import Run, RunEvent, StepRun, Workflow, WorkflowVersion
from tests.agents.registry_factories import make_agent, make_provider
from tests.dashboard.test_pages import (
    TenantPageTests,
    client_for,
    messages_of,
    tenant_events,
    text,
)
from tests.dashboard.test_registry_pages import (
    ForeignObjectChecks,
    acme_audit,
    dump,
    field_block,
    field_errors,
)

pytestmark = pytest.mark.django_db

INPUT_SCHEMA = {
    "type": "object",
    "required": ["message", "customer"],
    "properties": {
        "message": {"type": "string", "minLength": 1, "title": "Customer message"},
        "customer": {"type": "string", "minLength": 1, "title": "Customer"},
        "amount": {"type": "number", "minimum": 0, "title": "Refund amount (EUR)"},
        "priority": {"enum": ["low", "high"], "title": "Priority"},
        "urgent": {"type": "boolean", "title": "Urgent"},
        "copies": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}
EXAMPLE = {"message": "I was charged twice.", "customer": "Dana Scully", "amount": 120}


def definition(approvers: str = "admin", **extra: Any) -> dict[str, Any]:
    """An approval, then a router choosing between two more approvals (no registry needed)."""
    return {
        "input_schema": INPUT_SCHEMA,
        "example_input": EXAMPLE,
        "steps": [
            {
                "id": "check",
                "type": "approval",
                "title": "Refund {{ input.amount | default(0) }} EUR to {{ input.customer }}?",
                "details": {"customer": "{{ input.customer }}", "message": "{{ input.message }}"},
                "approvers": approvers,
            },
            {
                "id": "triage",
                "type": "router",
                "input": "{{ input }}",
                "rules": [
                    {
                        "when": {"path": "input.priority", "op": "eq", "value": "high"},
                        "route": "fast",
                    }
                ],
                "default_route": "slow",
                "routes": {"fast": ["refund"], "slow": ["later"]},
            },
            {"id": "refund", "type": "approval", "needs": ["triage"], "title": "Refund now?"},
            {"id": "later", "type": "approval", "needs": ["triage"], "title": "Refund later?"},
        ],
        **extra,
    }


def make_workflow(tenant, slug: str = "refunds", **fields) -> Workflow:
    with context.system_context("tests", tenant=tenant):
        return workflow_services.workflow_create(
            tenant=tenant,
            slug=slug,
            name=fields.pop("name", "Refunds"),
            definition=fields.pop("definition", None) or definition(),
            description=fields.pop("description", "Refunds need a person."),
            **fields,
        )


def start_run(tenant, workflow: Workflow, input: Any = None, user=None) -> Run:
    with context.system_context("tests", tenant=tenant):
        run, _ = services.run_start(
            tenant=tenant,
            workflow=workflow,
            input=EXAMPLE if input is None else input,
            created_by=user,
        )
        return run


def make_waiting(run: Run, required_role: str = "admin", kind: str = "approval", **fields):
    """Put the run where the approval step leaves it: a pending request, the step waiting."""
    tenant = run.tenant
    step = StepRun.objects.for_tenant(tenant).get(run=run, step_key="check")
    now = timezone.now()
    with context.system_context("tests", tenant=tenant):
        approval = approval_create(
            run=run,
            step_run=step,
            kind=kind,
            title=step.input["title"],
            details=step.input["details"],
            required_role=required_role,
            **fields,
        )
        StepRun.objects.for_tenant(tenant).filter(pk=step.pk).update(
            status=StepStatus.WAITING, attempt=1, started_at=now
        )
        Run.objects.for_tenant(tenant).filter(pk=run.pk).update(
            status=RunStatus.WAITING, started_at=now
        )
        run.refresh_from_db()
        emit(run=run, type="run.started", payload={})
        emit(
            run=run,
            type="step.waiting",
            step_key="check",
            payload={"approval": approval.pk, "title": approval.title, "kind": kind},
        )
        emit(run=run, type="run.waiting", payload={})
    return approval


def record_calls(run: Run) -> None:
    """What an LLM step leaves in the timeline: a policy decision, a model and a tool call."""
    with context.system_context("tests", tenant=run.tenant):
        emit(
            run=run,
            type="policy.decision",
            step_key="check",
            payload={
                "action": "call_tool",
                "agent": "billing-support",
                "tool": "issue-refund",
                "effect": "require_approval",
                "reason": "refunds over 100 EUR",
                "rule": "big-refunds",
            },
        )
        emit(
            run=run,
            type="model.call",
            step_key="check",
            payload={
                "agent": "billing-support",
                "model": "sim-1",
                "provider": "sim",
                "simulated": True,
                "input_tokens": 321,
                "output_tokens": 45,
                "cost_usd": 0.000411,
                "latency_ms": 12.5,
                "stop_reason": "tool_use",
                "tool_calls": ["kb-search"],
                "content": "Let me look that up.",
            },
        )
        emit(
            run=run,
            type="tool.call",
            step_key="check",
            payload={
                "agent": "billing-support",
                "tool": "kb-search",
                "kind": "registry",
                "arguments": {"query": "double charge refund"},
                "result": {"hits": ["Refund policy"]},
                "latency_ms": 1534.0,
                "policy": "allow",
                "idempotency_key": "run-1-step-check-0",
            },
        )


def acme_workflow(world) -> Workflow:
    return make_workflow(world.acme)


def globex_run(world) -> Run:
    return start_run(world.globex, make_workflow(world.globex, slug="globex-flow"))


def run_url(run: Run) -> str:
    return reverse("dashboard:run-detail", kwargs={"tenant": run.tenant.slug, "pk": run.pk})


def approval_url(approval: ApprovalRequest, tenant: str = "acme") -> str:
    return reverse("dashboard:approval-detail", kwargs={"tenant": tenant, "pk": approval.pk})


def decide_data(approval: ApprovalRequest, decision: str, comment: str = "", **more) -> dict:
    prefix = f"approval-{approval.pk}"
    return {f"{prefix}-decision": decision, f"{prefix}-comment": comment, **more}


def start_data(**values: Any) -> dict[str, str]:
    data = {"message": EXAMPLE["message"], "customer": EXAMPLE["customer"], "amount": "120"}
    data.update(values)
    return {f"input-{k}": v for k, v in data.items() if v is not None}


# generic page tests ------------------------------------------------------------------------


class TestWorkflowListPage(TenantPageTests):
    url_name = "workflows"
    permission = "runs.view_workflow"

    def prepare(self, world):
        workflow = make_workflow(world.acme, tags=["billing"])
        start_run(world.acme, workflow)
        make_workflow(world.globex, slug="globex-flow")
        return (
            [
                'href="/t/acme/workflows/refunds/"',
                "<code>refunds</code>",
                '<td data-label="Version">v1</td>',
                '<td data-label="Steps">4</td>',
                'href="/t/acme/runs/?workflow=refunds">1</a>',
                '<span class="tag">billing</span>',
                '<span class="badge status-active">active</span>',
                'aria-label="Filter workflows"',
            ],
            ["globex-flow", "New workflow", "Start a run", "Create the first workflow"],
        )


class TestWorkflowCreatePage(TenantPageTests):
    url_name = "workflow-create"
    permission = "runs.add_workflow"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "runs.add_workflow"

    def url_kwargs(self, world):
        make_agent(world.acme, slug="helper", provider=make_provider(world.acme, slug="sim"))
        make_agent(world.globex, slug="globex-helper")
        return {}

    def prepare(self, world):
        return (
            [
                'name="definition"',
                "&quot;agent&quot;: &quot;helper&quot;",
                'href="/api/v1/schemas/workflow-definition/"',
                "Create workflow</button>",
            ],
            ["globex-helper"],
        )

    def forged_post(self, world):
        return {"slug": "forged", "name": "Forged", "definition": dump(definition())}

    def written(self, world):
        return sorted(Workflow.objects.for_tenant(world.acme).values_list("slug", flat=True))


class TestWorkflowDetailPage(ForeignObjectChecks, TenantPageTests):
    url_name = "workflow-detail"
    permission = "runs.view_workflow"
    write_role = Role.ADMIN
    write_permission = "runs.change_workflow"

    def url_kwargs(self, world):
        acme_workflow(world)
        return {"slug": "refunds"}

    def prepare(self, world):
        return (
            [
                '<pre id="workflow-definition">',
                "&quot;default_route&quot;: &quot;slow&quot;",
                'id="workflow-graph"',
                'id="version-history"',
                '<span class="badge current">current</span>',
                "No runs of this workflow yet.",
            ],
            [
                'value="publish"',
                'value="disable"',
                'id="start-form"',
                "Start a run</a>",
                "Start one with the form above",
            ],
        )

    def forged_post(self, world):
        return {"op": "disable"}

    def written(self, world):
        return Workflow.objects.for_tenant(world.acme).get(slug="refunds").status

    def foreign_url_kwargs(self, world):
        make_workflow(world.globex, slug="globex-flow")
        return {"slug": "globex-flow"}


class TestWorkflowStartPage(ForeignObjectChecks, TenantPageTests):
    url_name = "workflow-start"
    permission = "runs.add_run"
    read_role = Role.OPERATOR
    write_role = Role.OPERATOR
    write_permission = "runs.add_run"

    def url_kwargs(self, world):
        acme_workflow(world)
        return {"slug": "refunds"}

    def prepare(self, world):
        return (
            [
                'id="start-form"',
                'name="input-message" value="I was charged twice."',
                'name="input-amount" value="120"',
                "Refund amount (EUR)",
                "Start run</button>",
            ],
            ["globex"],
        )

    def forged_post(self, world):
        return start_data()

    def written(self, world):
        return Run.objects.for_tenant(world.acme).count()

    def foreign_url_kwargs(self, world):
        make_workflow(world.globex, slug="globex-flow")
        return {"slug": "globex-flow"}


class TestRunListPage(TenantPageTests):
    url_name = "runs"
    permission = "runs.view_run"

    def prepare(self, world):
        run = start_run(world.acme, acme_workflow(world), user=world.oscar)
        theirs = globex_run(world)
        return (
            [
                f'href="/t/acme/runs/{run.pk}/"><strong>#{run.pk}</strong></a>',
                'href="/t/acme/workflows/refunds/">refunds</a> v1',
                '<span class="badge status-queued">Queued</span>',
                "0 of 4 steps",
                '<td data-label="Started by">oscar</td>',
                'aria-label="Filter runs"',
            ],
            [f"/t/acme/runs/{theirs.pk}/", "globex-flow", "Start a run…"],
        )


class TestRunDetailPage(ForeignObjectChecks, TenantPageTests):
    url_name = "run-detail"
    permission = "runs.view_run"
    write_role = Role.OPERATOR
    write_permission = "runs.cancel_run"

    def url_kwargs(self, world):
        self.run = start_run(world.acme, acme_workflow(world), user=world.oscar)
        return {"pk": self.run.pk}

    def prepare(self, world):
        approval = make_waiting(self.run)
        record_calls(self.run)
        return (
            [
                '<span class="badge status-waiting">Waiting for a person</span>',
                '<progress id="run-progress" max="4" value="0">0%</progress>',
                "0 of 4 steps finished (0%)",
                'id="run-steps"',
                'id="timeline-events"',
                "Model call by billing-support: sim-1",
                "321 in / 45 out",
                "$0.000411",
                "Tool call by billing-support: kb-search",
                "1.53 s",
                "Policy decision: require approval call_tool issue-refund",
                "refunds over 100 EUR",
                f'href="/t/acme/approvals/{approval.pk}/">Refund 120 EUR to Dana Scully?</a>',
                "Your role (viewer) cannot decide it.",
                'hx-trigger="every 1s"',
            ],
            ['value="cancel"', 'value="rerun"', 'value="resume"', "-decision", "globex"],
        )

    def forged_post(self, world):
        return {"op": "cancel"}

    def written(self, world):
        return Run.objects.for_tenant(world.acme).get(pk=self.run.pk).status

    def foreign_url_kwargs(self, world):
        return {"pk": globex_run(world).pk}


class TestApprovalInboxPage(TenantPageTests):
    url_name = "approvals"
    permission = "runs.view_approvalrequest"

    def prepare(self, world):
        approval = make_waiting(start_run(world.acme, acme_workflow(world)))
        make_waiting(globex_run(world))
        return (
            [
                f'href="/t/acme/approvals/{approval.pk}/">Refund 120 EUR to Dana Scully?</a>',
                '<span class="badge status-pending">Pending</span>',
                "the admin role or higher",
                "&quot;customer&quot;: &quot;Dana Scully&quot;",
                "Your role (viewer) cannot decide it.",
                'aria-label="Filter approvals"',
            ],
            ["-decision", "waiting for you", "globex-flow"],
        )


class TestApprovalDetailPage(ForeignObjectChecks, TenantPageTests):
    url_name = "approval-detail"
    permission = "runs.view_approvalrequest"
    write_role = Role.ADMIN
    write_permission = "runs.decide_approvalrequest"

    def url_kwargs(self, world):
        self.approval = make_waiting(start_run(world.acme, acme_workflow(world)))
        return {"pk": self.approval.pk}

    def prepare(self, world):
        return (
            [
                "Approval request #",
                "Refund 120 EUR to Dana Scully?",
                f'href="/t/acme/runs/{self.approval.run_id}/">#{self.approval.run_id}</a>',
                "step <code>check</code>",
                "Your role (viewer) cannot decide it.",
            ],
            ["-decision", "Approve</button>"],
        )

    def forged_post(self, world):
        return decide_data(self.approval, "approve", "forged")

    def written(self, world):
        return ApprovalRequest.objects.for_tenant(world.acme).get(pk=self.approval.pk).status

    def foreign_url_kwargs(self, world):
        return {"pk": make_waiting(globex_run(world)).pk}


# workflows ---------------------------------------------------------------------------------


class TestWorkflowCreateForm:
    url = "/t/acme/workflows/new/"

    def post(self, client, definition_value, **overrides):
        data = {
            "slug": "refunds",
            "name": "Refunds",
            "description": "",
            "tags": "billing",
            "definition": definition_value
            if isinstance(definition_value, str)
            else dump(definition_value),
            "note": "",
        }
        data.update(overrides)
        return client.post(self.url, data)

    def test_bad_definition_shows_path_keyed_errors_and_saves_nothing(self, world):
        bad = definition()
        bad["steps"][1]["needs"] = ["nowhere"]
        bad["steps"][2]["type"] = "teleport"
        bad["steps"].append({"id": "lonely", "type": "agent", "agent": "ghost"})
        response = self.post(client_for(world.alice), bad)
        assert response.status_code == 400
        body = text(response)
        errors = field_errors(body, "definition")
        assert "definition.steps[1].needs[0]: Unknown step 'nowhere'." in errors
        assert any(e.startswith("definition.steps[2].type: ") for e in errors), errors
        assert any(e.startswith("definition.steps[4].agent: ") for e in errors), errors
        assert 'aria-invalid="true"' in field_block(body, "definition")
        assert "Nothing was saved." in body
        assert "&quot;teleport&quot;" in field_block(body, "definition")  # what was typed stays
        assert not Workflow.objects.for_tenant(world.acme).exists()
        assert not WorkflowVersion.objects.for_tenant(world.acme).exists()
        assert not acme_audit("workflow.create").exists()

    def test_invalid_json_and_taken_slug_are_explained(self, world):
        client = client_for(world.alice)
        [error] = field_errors(text(self.post(client, '{"steps": [}')), "definition")
        assert error.startswith("This is not valid JSON: ")
        make_workflow(world.acme)
        taken = self.post(client, definition())
        assert taken.status_code == 400
        assert field_errors(text(taken), "slug") == [
            "Workflow 'refunds' already exists in this tenant."
        ]
        assert Workflow.objects.for_tenant(world.acme).count() == 1

    def test_create_saves_v1_and_opens_the_workflow(self, world):
        client = client_for(world.adam)
        response = self.post(client, definition(), note="first cut")
        assert response.status_code == 302
        assert response["Location"] == "/t/acme/workflows/refunds/"
        workflow = Workflow.objects.for_tenant(world.acme).get(slug="refunds")
        assert workflow.tags == ["billing"]
        version = workflow.current_version
        assert (version.number, version.note, version.created_by) == (1, "first cut", world.adam)
        assert version.definition == definition()
        assert acme_audit("workflow.create").get().actor_user_id == world.adam.pk
        page = client.get(response["Location"])
        assert "Workflow “refunds” created as v1." in messages_of(page)

    def test_the_example_definition_is_valid_as_given(self, world):
        make_agent(world.acme, slug="helper", provider=make_provider(world.acme, slug="sim"))
        client = client_for(world.alice)
        body = text(client.get(self.url))
        typed = html.unescape(
            re.search(r'<textarea name="definition"[^>]*>\n?(.*?)</textarea>', body, re.S)[1]
        )
        response = self.post(client, typed, slug="from-example")
        assert response.status_code == 302, field_errors(text(response), "definition")
        steps = Workflow.objects.for_tenant(world.acme).get(slug="from-example")
        assert steps.current_version.definition["steps"][0]["agent"] == "helper"

    def test_empty_state_tells_each_role_what_to_do(self, world):
        admin = text(client_for(world.adam).get("/t/acme/workflows/"))
        assert "No workflows yet." in admin
        assert 'href="/t/acme/workflows/new/">Create the first workflow</a>' in admin
        viewer = text(client_for(world.bob).get("/t/acme/workflows/"))
        assert "Ask an owner or admin of this tenant to create one." in viewer
        assert 'aria-label="Filter workflows"' not in viewer


class TestWorkflowList:
    url = "/t/acme/workflows/"

    def test_search_and_status_filter(self, world):
        make_workflow(world.acme, slug="refunds", description="Money back")
        other = make_workflow(world.acme, slug="onboarding", name="Onboarding", description="")
        with context.system_context("tests", tenant=world.acme):
            workflow_services.workflow_update(workflow=other, status="disabled")
        client = client_for(world.bob)

        def slugs(**params):
            body = text(client.get(self.url, params))
            return re.findall(r'href="/t/acme/workflows/([a-z0-9-]+)/"', body)

        assert slugs() == ["onboarding", "refunds"]
        assert slugs(q="money") == ["refunds"]
        assert slugs(status="disabled") == ["onboarding"]
        none = text(client.get(self.url, {"q": "nothing-like-this"}))
        assert "No workflows match these filters." in none
        invalid = client.get(self.url, {"status": "sleeping"})
        assert invalid.status_code == 200
        assert 'class="error" role="alert"' in text(invalid)

    def test_operator_gets_a_start_link_only_for_active_workflows(self, world):
        make_workflow(world.acme, slug="refunds")
        other = make_workflow(world.acme, slug="onboarding")
        with context.system_context("tests", tenant=world.acme):
            workflow_services.workflow_update(workflow=other, status="disabled")
        body = text(client_for(world.oscar).get(self.url))
        assert 'href="/t/acme/workflows/refunds/start/">Start a run</a>' in body
        assert "/t/acme/workflows/onboarding/start/" not in body


class TestWorkflowDetail:
    url = "/t/acme/workflows/refunds/"

    @pytest.fixture
    def workflow(self, world):
        return acme_workflow(world)

    def test_graph_lays_steps_out_in_layers_with_needs_and_routes(self, world, workflow):
        body = text(client_for(world.bob).get(self.url))
        graph = body.split('id="workflow-graph"')[1].split("</ol>\n")[0]
        layers = [
            re.findall(r'<li class="node" id="node-([a-z_]+)">', layer)
            for layer in graph.split('<li class="layer">')[1:]
        ]
        assert layers == [["check"], ["triage"], ["refund", "later"]]
        refund = graph.split('id="node-refund"')[1].split("</li>\n      ")[0]
        assert 'Needs</dt><dd><a href="#node-triage"><code>triage</code></a>' in refund
        assert "<code>triage</code> routes here" in refund
        triage = graph.split('id="node-triage"')[1].split('id="node-refund"')[0]
        assert '<strong>fast</strong> → <a href="#node-refund">' in triage
        assert '<strong>slow</strong> → <a href="#node-later">' in triage
        assert "nothing (a first step)" in graph.split('id="node-check"')[1]

    def test_graph_is_drawn_as_svg_beside_the_list(self, world, workflow):
        body = text(client_for(world.bob).get(self.url))
        svg = body.split('id="workflow-graph-svg"')[1].split("</svg>")[0]
        assert 'role="img" aria-labelledby="graph-svg-title graph-svg-desc"' in svg
        assert '<title id="graph-svg-title">Step graph of refunds v1</title>' in svg
        assert "4 steps in 3 layers, drawn top to bottom" in svg
        nodes = re.findall(
            r'<g class="graph-node type-(\w+)" data-step="(\w+)" '
            r'transform="translate\((\d+),(\d+)\)"',
            svg,
        )
        assert [(kind, step) for kind, step, _, _ in nodes] == [
            ("approval", "check"),
            ("router", "triage"),
            ("approval", "refund"),
            ("approval", "later"),
        ]
        ys = [int(y) for _, _, _, y in nodes]
        assert ys[0] < ys[1] < ys[2] == ys[3]  # one layer per depth; refund and later side by side
        assert int(nodes[2][2]) < int(nodes[3][2])
        # the step type is written on each box, not only implied by its colour
        assert (
            '<text x="14" y="44" font-size="12" fill="#57606a">router · inline rules</text>' in svg
        )
        edges = re.findall(
            r'class="(edge[^"]*)" d="[^"]+" marker-end="url\(#graph-arrow\)"'
            r'(?: stroke-dasharray="6 4")? data-from="(\w+)" data-to="(\w+)"',
            svg,
        )
        assert sorted(edges) == [
            ("edge", "check", "triage"),
            ("edge routed", "triage", "later"),
            ("edge routed", "triage", "refund"),
        ]
        assert ">fast</text>" in svg and ">slow</text>" in svg

    def test_a_graph_too_large_to_draw_is_only_listed(self, world):
        steps = [{"id": f"s{i}", "type": "approval", "title": "Go?"} for i in range(81)]
        make_workflow(
            world.acme,
            slug="long",
            definition={"input_schema": {"type": "object"}, "example_input": {}, "steps": steps},
        )
        body = text(client_for(world.bob).get("/t/acme/workflows/long/"))
        assert 'id="workflow-graph-svg"' not in body
        assert "too many steps to draw" in body
        assert body.count('<li class="node"') == 81

    def test_publish_validates_inline_and_saves_nothing_on_error(self, world, workflow):
        client = client_for(world.adam)
        bad = definition()
        bad["steps"][0]["approvers"] = "janitor"
        response = client.post(self.url, {"op": "publish", "definition": dump(bad), "note": "x"})
        assert response.status_code == 400
        errors = field_errors(text(response), "definition")
        assert errors and all(e.startswith("definition.steps[0].approvers: ") for e in errors)
        assert WorkflowVersion.objects.for_tenant(world.acme).count() == 1
        assert not acme_audit("workflow.publish").exists()

    def test_publish_makes_a_new_current_version(self, world, workflow):
        client = client_for(world.adam)
        changed = definition(approvers="operator")
        response = client.post(
            self.url, {"op": "publish", "definition": dump(changed), "note": "operators decide"}
        )
        assert response.status_code == 302
        assert response["Location"] == f"{self.url}#versions"
        workflow.refresh_from_db()
        assert workflow.current_version.number == 2
        assert workflow.current_version.definition == changed
        assert acme_audit("workflow.publish").get().after == {"version": 2}
        page = client.get(self.url)
        assert "Published v2; new runs use it." in messages_of(page)
        body = text(page)
        assert "Publish v3</button>" in body
        assert "operator or above" in body.split('id="workflow-graph"')[1]
        assert body.count("<summary>Show v") == 2

    def test_disable_hides_the_start_form(self, world, workflow):
        client = client_for(world.alice)
        assert 'id="start-form"' in text(client.get(self.url))
        assert client.post(self.url, {"op": "disable"}).status_code == 302
        workflow.refresh_from_db()
        assert workflow.status == "disabled"
        body = text(client.get(self.url))
        assert 'id="start-form"' not in body
        assert "This workflow is disabled: no new run can start." in body
        refused = client.post(f"{self.url}start/", start_data(), follow=True)
        assert "Workflow “refunds” is disabled: enable it first." in messages_of(refused)
        assert not Run.objects.for_tenant(world.acme).exists()

    def test_recent_runs_are_listed(self, world, workflow):
        run = start_run(world.acme, workflow, user=world.oscar)
        body = text(client_for(world.bob).get(self.url))
        assert f'href="/t/acme/runs/{run.pk}/"><strong>#{run.pk}</strong>' in body
        assert 'href="/t/acme/runs/?workflow=refunds">All runs of refunds</a>' in body


# starting a run ----------------------------------------------------------------------------


class TestStartRunForm:
    url = "/t/acme/workflows/refunds/start/"

    @pytest.fixture
    def workflow(self, world):
        return acme_workflow(world)

    def test_form_is_generated_from_the_input_schema_with_the_example(self, world, workflow):
        body = text(client_for(world.oscar).get("/t/acme/workflows/refunds/"))
        form = body.split('id="start-form"')[1].split("</form>")[0]
        assert 'action="/t/acme/workflows/refunds/start/"' in body
        assert re.search(r'<label for="id_input-message">Customer message</label>', form)
        assert 'type="text" name="input-message" value="I was charged twice."' in form
        assert 'type="number" name="input-amount" value="120" step="any"' in form
        assert 'min="0"' in field_block(form, "input-amount")
        assert '<option value="low">low</option>' in form
        assert '<option value="" selected>Not set</option>' in field_block(form, "input-priority")
        assert 'name="input-urgent"' in form and "<option" in field_block(form, "input-urgent")
        assert 'type="number" name="input-copies"' in form and 'max="5"' in form
        assert "(optional)" in field_block(form, "input-amount")
        assert "(optional)" not in field_block(form, "input-customer")
        assert re.search(r'name="idempotency_key" value="dashboard-[0-9a-f]{32}"', form)
        # required fields lead (PostgreSQL does not keep the schema's key order)
        assert re.findall(r'name="input-([a-z]+)"', form)[:2] == ["message", "customer"]

    def test_bad_input_shows_field_errors_and_starts_nothing(self, world, workflow):
        response = client_for(world.oscar).post(
            self.url, start_data(customer="", amount="-5", copies="9", priority="medium")
        )
        assert response.status_code == 400
        body = text(response)
        assert field_errors(body, "input-customer") == ["This field is required."]
        assert field_errors(body, "input-amount") == [
            "Ensure this value is greater than or equal to 0."
        ]
        assert field_errors(body, "input-copies") == [
            "Ensure this value is less than or equal to 5."
        ]
        assert field_errors(body, "input-priority") == [
            "Select a valid choice. medium is not one of the available choices."
        ]
        assert "No run was started." in body
        assert 'value="I was charged twice."' in body  # what was typed stays
        assert not Run.objects.for_tenant(world.acme).exists()
        assert not acme_audit("run.start").exists()

    def test_schema_errors_only_the_service_finds_land_on_their_field(self, world):
        schema = {
            "type": "object",
            "required": ["code"],
            "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$", "title": "Code"}},
        }
        make_workflow(
            world.acme,
            slug="codes",
            definition={
                "input_schema": schema,
                "example_input": {"code": "ABC"},
                "steps": [{"id": "ok", "type": "approval", "title": "{{ input.code }}?"}],
            },
        )
        response = client_for(world.oscar).post(
            "/t/acme/workflows/codes/start/", {"input-code": "abc"}
        )
        assert response.status_code == 400
        assert field_errors(text(response), "input-code") == ["'abc' does not match '^[A-Z]{3}$'"]
        assert not Run.objects.for_tenant(world.acme).exists()

    def test_start_creates_the_run_with_typed_values_and_opens_it(self, world, workflow):
        client = client_for(world.oscar)
        response = client.post(
            self.url,
            {**start_data(priority="high", urgent="true", copies="2"), "idempotency_key": "k-1"},
        )
        assert response.status_code == 302
        run = Run.objects.for_tenant(world.acme).get()
        assert response["Location"] == f"/t/acme/runs/{run.pk}/"
        assert run.input == {
            "message": "I was charged twice.",
            "customer": "Dana Scully",
            "amount": 120,
            "priority": "high",
            "urgent": True,
            "copies": 2,
        }
        assert (run.created_by, run.workflow_version.number) == (world.oscar, 1)
        assert acme_audit("run.start").get().actor_user_id == world.oscar.pk
        assert f"Run #{run.pk} of refunds v1 started." in messages_of(client.get(run_url(run)))
        # the same form sent again (a double click) starts nothing more
        again = client.post(self.url, {**start_data(), "idempotency_key": "k-1"})
        assert again["Location"] == f"/t/acme/runs/{run.pk}/"
        assert Run.objects.for_tenant(world.acme).count() == 1

    def test_complex_schema_falls_back_to_json(self, world):
        make_workflow(
            world.acme,
            slug="batch",
            definition={
                "input_schema": {
                    "type": "object",
                    "oneOf": [{"required": ["items"]}, {"required": ["all"]}],
                    "properties": {
                        "items": {"type": "array", "items": {"type": "string"}},
                        "all": {"type": "boolean"},
                    },
                },
                "example_input": {"items": ["a", "b"]},
                "steps": [{"id": "ok", "type": "approval", "title": "Go?"}],
            },
        )
        client = client_for(world.oscar)
        body = text(client.get("/t/acme/workflows/batch/start/"))
        assert "its schema cannot be shown as form fields" in body
        assert 'id="start-mode-fields"' not in body  # there are no fields to go back to
        assert "&quot;items&quot;: [" in field_block(body, "input-json")
        wrong = client.post("/t/acme/workflows/batch/start/", {"input-json": '{"items": [1]}'})
        assert wrong.status_code == 400
        assert field_errors(text(wrong), "input-json") == [
            "input.items[0]: 1 is not of type 'string'"
        ]
        right = client.post("/t/acme/workflows/batch/start/", {"input-json": '{"items": ["x"]}'})
        assert right.status_code == 302
        assert Run.objects.for_tenant(world.acme).get().input == {"items": ["x"]}

    @pytest.fixture
    def orders(self, world):
        schema = {
            "type": "object",
            "required": ["order", "note"],
            "properties": {
                "note": {
                    "type": "string",
                    "maxLength": 1000,
                    "description": "Anything the team should know.",
                },
                "order": {"type": "object", "required": ["id"], "title": "Order"},
                "tags": {"type": "array", "items": {"type": "string"}, "title": "Tags"},
                "express": {"type": "boolean", "title": "Express"},
            },
        }
        return make_workflow(
            world.acme,
            slug="orders",
            definition={
                "input_schema": schema,
                "example_input": {"note": "Fragile", "order": {"id": 7}, "tags": ["gift"]},
                "steps": [{"id": "ok", "type": "approval", "title": "Ship {{ input.order.id }}?"}],
            },
        )

    def test_objects_and_arrays_are_json_fields_with_their_own_errors(self, world, orders):
        client = client_for(world.oscar)
        url = "/t/acme/workflows/orders/start/"
        body = text(client.get(url))
        note = field_block(body, "input-note")
        assert "<textarea" in note and "Anything the team should know." in note
        assert "(optional)" not in note and " required" in note
        order = field_block(body, "input-order")
        assert 'class="code"' in order and "&quot;id&quot;: 7" in order
        assert "JSON: an object ({...})." in order
        tags = field_block(body, "input-tags")
        assert "(optional)" in tags and "&quot;gift&quot;" in tags
        express = field_block(body, "input-express")  # an optional yes / no: it may stay unset
        assert '<option value="" selected>Not set</option>' in express
        assert '<option value="true">Yes</option>' in express
        assert 'href="?input_mode=json#start" id="start-mode-json"' in body
        bad = client.post(
            url,
            {
                "input-note": "x",
                "input-order": '{"number": 7}',
                "input-tags": '["ok", 3]',
            },
        )
        assert bad.status_code == 400
        page = text(bad)
        assert field_errors(page, "input-order") == ["'id' is a required property"]
        assert field_errors(page, "input-tags") == ["tags[1]: 3 is not of type 'string'"]
        assert not Run.objects.for_tenant(world.acme).exists()
        syntax = client.post(url, {"input-note": "x", "input-order": "{id: 7}"})
        assert field_errors(text(syntax), "input-order")[0].startswith("This is not valid JSON")
        good = client.post(
            url,
            {
                "input-note": "x",
                "input-order": '{"id": 9}',
                "input-tags": '["a"]',
                "input-express": "true",
            },
        )
        assert good.status_code == 302
        run = Run.objects.for_tenant(world.acme).get()
        assert run.input == {"note": "x", "order": {"id": 9}, "tags": ["a"], "express": True}

    def test_the_input_can_be_typed_as_json_instead(self, world, orders):
        client = client_for(world.oscar)
        url = "/t/acme/workflows/orders/start/"
        body = text(client.get(url, {"input_mode": "json"}))
        assert '<input type="hidden" name="input_mode" value="json">' in body
        assert '<a href="?#start" id="start-mode-fields">Use the form fields instead</a>' in body
        assert "&quot;note&quot;: &quot;Fragile&quot;" in field_block(body, "input-json")
        assert 'name="input-note"' not in body
        # the workflow page offers the same switch
        detail = text(client.get("/t/acme/workflows/orders/", {"input_mode": "json"}))
        assert 'name="input-json"' in detail.split('id="start-form"')[1]
        wrong = client.post(url, {"input_mode": "json", "input-json": '{"note": "x", "order": {}}'})
        assert wrong.status_code == 400
        page = text(wrong)
        assert field_errors(page, "input-json") == ["input.order: 'id' is a required property"]
        assert '<input type="hidden" name="input_mode" value="json">' in page  # mode kept
        right = client.post(
            url, {"input_mode": "json", "input-json": '{"note": "x", "order": {"id": 1, "n": 2}}'}
        )
        assert right.status_code == 302
        assert Run.objects.for_tenant(world.acme).get().input == {
            "note": "x",
            "order": {"id": 1, "n": 2},
        }

    def test_viewer_has_no_form_and_a_forged_start_is_403(self, world, workflow):
        client = client_for(world.bob)
        assert 'id="start-form"' not in text(client.get("/t/acme/workflows/refunds/"))
        assert client.get(self.url).status_code == 403
        assert client.post(self.url, start_data()).status_code == 403
        assert not Run.objects.for_tenant(world.acme).exists()
        denial = tenant_events(world.acme, "permission.denied").order_by("-seq").first()
        assert (denial.metadata["permission"], denial.metadata["method"]) == (
            "runs.add_run",
            "POST",
        )


# runs --------------------------------------------------------------------------------------


class TestRunList:
    url = "/t/acme/runs/"

    def test_filters_search_and_pagination(self, world):
        refunds = acme_workflow(world)
        other = make_workflow(world.acme, slug="other")
        runs = [start_run(world.acme, refunds) for _ in range(3)]
        runs.append(start_run(world.acme, other))
        Run.objects.for_tenant(world.acme).filter(pk=runs[0].pk).update(status=RunStatus.SUCCEEDED)
        client = client_for(world.bob)

        def ids(**params):
            body = text(client.get(self.url, params))
            return [int(n) for n in re.findall(r'href="/t/acme/runs/(\d+)/"><strong>', body)]

        assert ids() == [r.pk for r in reversed(runs)]
        assert ids(workflow="other") == [runs[3].pk]
        assert ids(status="succeeded") == [runs[0].pk]
        assert ids(q=f"#{runs[1].pk}") == [runs[1].pk]
        assert ids(q=str(runs[2].pk), workflow="other") == []
        invalid = client.get(self.url, {"q": "latest"})
        assert "Give a run number, e.g. 42." in text(invalid)
        assert ids(q="latest") == []
        assert '<option value="other">other</option>' in text(client.get(self.url))

    def test_pages_of_fifty(self, world):
        workflow = acme_workflow(world)
        for _ in range(52):
            start_run(world.acme, workflow)
        client = client_for(world.bob)
        first = text(client.get(self.url))
        assert len(re.findall(r"<strong>#\d+</strong>", first)) == 50
        assert "Page 1 of 2" in first
        second = text(client.get(self.url, {"page": 2}))
        assert len(re.findall(r"<strong>#\d+</strong>", second)) == 2

    def test_pages_fetch_keys_first_in_order_and_constant_queries(self, world):
        workflow = acme_workflow(world)
        ids = [start_run(world.acme, workflow).pk for _ in range(101)]
        client = client_for(world.bob)
        client.get(self.url)
        shown = []
        counts = []
        for number in (1, 2, 3):
            with CaptureQueriesContext(connection) as queries:
                body = text(client.get(self.url, {"page": number}))
            counts.append(len(queries))
            shown += [int(n) for n in re.findall(r"<strong>#(\d+)</strong>", body)]
        assert shown == sorted(ids, reverse=True)  # newest first, none twice, none missing
        assert counts[0] == counts[1] == counts[2], counts

    def test_status_is_a_word_and_an_icon_not_a_colour(self, world):
        run = start_run(world.acme, acme_workflow(world))
        make_waiting(run)
        body = text(client_for(world.bob).get(self.url))
        assert '<span class="badge status-waiting">Waiting for a person</span>' in body
        with open("static/css/app.css") as css:
            assert '.status-waiting::before, .status-pending::before { content:"◷ "; }' in (
                css.read()
            )

    def test_empty_state_says_what_to_do_next(self, world):
        operator = text(client_for(world.oscar).get(self.url))
        assert "No runs yet." in operator
        assert "There is no workflow to run yet: ask an owner or admin to create one." in operator
        acme_workflow(world)
        operator = text(client_for(world.oscar).get(self.url))
        assert 'href="/t/acme/workflows/">Choose a workflow</a>' in operator
        viewer = text(client_for(world.bob).get(self.url))
        assert "your role can follow them but not start them" in viewer


class TestRunDetail:
    @pytest.fixture
    def run(self, world):
        return start_run(world.acme, acme_workflow(world), user=world.oscar)

    def test_steps_table_lists_every_step_in_graph_order(self, world, run):
        make_waiting(run)
        body = text(client_for(world.bob).get(run_url(run)))
        table = body.split('id="run-steps"')[1].split("</table>")[0]
        assert re.findall(r'<tr id="step-([a-z_]+)">', table) == [
            "check",
            "triage",
            "refund",
            "later",
        ]
        check = table.split('id="step-check"')[1].split("</tr>")[0]
        assert '<span class="badge status-waiting">Waiting for a person</span>' in check
        assert '<td data-label="Attempt">1 of 1</td>' in check
        assert "&quot;customer&quot;: &quot;Dana Scully&quot;" in check  # its input
        later = table.split('id="step-later"')[1].split("</tr>")[0]
        assert '<span class="badge status-not_started">Not started</span>' in later

    def test_live_fragment_sends_only_new_events_and_the_state(self, world, run):
        client = client_for(world.bob)
        page = text(client.get(run_url(run)))
        after = int(re.search(r'id="timeline-after" name="after" value="(\d+)"', page)[1])
        assert after == RunEvent.objects.for_tenant(world.acme).filter(run=run).count()

        # nothing new: 204, htmx keeps polling and swaps nothing
        idle = client.get(run_url(run), {"after": after}, HTTP_HX_REQUEST="true")
        assert idle.status_code == 204

        make_waiting(run)
        record_calls(run)
        fresh = client.get(run_url(run), {"after": after}, HTTP_HX_REQUEST="true")
        assert fresh.status_code == 200
        body = text(fresh)
        seqs = [int(n) for n in re.findall(r'<li class="event[^"]*" id="event-(\d+)">', body)]
        assert seqs == list(range(after + 1, after + 7))
        assert "<html" not in body  # a fragment, not a page
        assert f'id="timeline-after" name="after" value="{seqs[-1]}" hx-swap-oob="true"' in body
        assert '<div id="run-state" hx-swap-oob="true">' in body
        assert '<span class="badge status-waiting">Waiting for a person</span>' in body

        # the run ends: the last answer is 286, which stops htmx polling
        with context.system_context("tests", tenant=world.acme):
            services.run_cancel(run=run, reason="enough")
        last = client.get(run_url(run), {"after": seqs[-1]}, HTTP_HX_REQUEST="true")
        assert last.status_code == 286
        assert "Run cancelled" in text(last)
        assert "The run has ended; nothing more will change." in text(last)
        ended = text(client.get(run_url(run)))
        assert 'id="run-poller"' not in ended  # a finished run's page does not poll

    def test_cancel_asks_for_confirmation_and_cancels(self, world, run):
        client = client_for(world.oscar)
        body = text(client.get(run_url(run)))
        assert f'data-confirm="Cancel run #{run.pk}? Running steps stop' in body
        response = client.post(run_url(run), {"op": "cancel"})
        assert response.status_code == 302
        run.refresh_from_db()
        assert (run.status, run.status_reason) == ("cancelled", "cancelled by oscar")
        assert acme_audit("run.cancel").get().actor_user_id == world.oscar.pk
        page = client.get(run_url(run))
        assert f"Run #{run.pk} cancelled; running steps stop shortly." in messages_of(page)
        assert 'value="cancel"' not in text(page)
        # cancelling again explains why nothing happened
        again = client.post(run_url(run), {"op": "cancel"}, follow=True)
        assert f"Run #{run.pk} was not cancelled: The run already ended (cancelled)." in (
            messages_of(again)
        )

    def test_resume_a_failed_run(self, world, run):
        StepRun.objects.for_tenant(world.acme).filter(run=run, step_key="check").update(
            status=StepStatus.FAILED, error={"message": "boom", "code": "x"}, attempt=1
        )
        Run.objects.for_tenant(world.acme).filter(pk=run.pk).update(
            status=RunStatus.FAILED, status_reason="step check failed"
        )
        client = client_for(world.oscar)
        body = text(client.get(run_url(run)))
        assert 'value="resume"' in body
        assert '<span class="error">boom</span>' in body
        response = client.post(run_url(run), {"op": "resume"})
        assert response.status_code == 302
        run.refresh_from_db()
        assert (run.status, run.resume_count) == ("running", 1)
        step = StepRun.objects.for_tenant(world.acme).get(run=run, step_key="check")
        assert (step.status, step.error) == ("queued", None)
        assert acme_audit("run.resume").get().metadata == {"steps": ["check"]}
        page = client.get(run_url(run))
        assert f"Run #{run.pk} resumed from its failed steps (resume 1)." in messages_of(page)
        # a running run does not resume
        again = client.post(run_url(run), {"op": "resume"}, follow=True)
        assert (
            f"Run #{run.pk} was not resumed: Only failed or timed-out runs resume; "
            "this one is running." in messages_of(again)
        )

    def test_rerun_with_edited_input(self, world, run):
        client = client_for(world.oscar)
        body = text(client.get(run_url(run)))
        rerun_form = body.split('id="rerun"')[1].split("</form>")[0]
        assert 'data-confirm="Start a new run of refunds with this input?' in rerun_form
        assert 'name="input-customer" value="Dana Scully"' in rerun_form
        bad = client.post(run_url(run), {"op": "rerun", **start_data(customer="")})
        assert bad.status_code == 400
        assert field_errors(text(bad), "input-customer") == ["This field is required."]
        assert Run.objects.for_tenant(world.acme).count() == 1
        response = client.post(run_url(run), {"op": "rerun", **start_data(customer="Fox")})
        assert response.status_code == 302
        rerun = Run.objects.for_tenant(world.acme).exclude(pk=run.pk).get()
        assert response["Location"] == f"/t/acme/runs/{rerun.pk}/"
        assert rerun.input == {**EXAMPLE, "customer": "Fox"}
        assert (rerun.rerun_of_id, rerun.created_by) == (run.pk, world.oscar)
        assert acme_audit("run.rerun").get().metadata == {
            "rerun_of": run.pk,
            "input_changed": True,
            "versions": "same",
        }
        page = client.get(response["Location"])
        assert (
            f"Run #{rerun.pk} started: #{run.pk} again, with edited input and the same agent "
            "versions." in messages_of(page)
        )
        assert f'rerun of <a href="/t/acme/runs/{run.pk}/">#{run.pk}</a>' in text(page)

    def test_a_single_agent_run_reruns_with_json_input(self, world):
        agent = make_agent(world.acme, slug="helper", provider=make_provider(world.acme))
        with context.system_context("tests", tenant=world.acme):
            run, _ = services.run_start(tenant=world.acme, agent=agent, input={"q": "hi"})
        client = client_for(world.oscar)
        body = text(client.get(run_url(run)))
        assert 'agent <a href="/t/acme/agents/helper/">helper</a>' in body
        assert "&quot;q&quot;: &quot;hi&quot;" in field_block(body, "input-json")
        response = client.post(run_url(run), {"op": "rerun", "input-json": '{"q": "again"}'})
        assert response.status_code == 302
        rerun = Run.objects.for_tenant(world.acme).exclude(pk=run.pk).get()
        assert (rerun.agent, rerun.input, rerun.rerun_of_id) == (agent, {"q": "again"}, run.pk)
        same = client.post(run_url(run), {"op": "rerun", "input-json": '{"q": "hi"}'})
        assert same.status_code == 302
        assert acme_audit("run.rerun").order_by("-seq").first().metadata["input_changed"] is False

    def test_viewer_sees_no_action_and_forged_posts_are_403(self, world, run):
        approval = make_waiting(run)
        client = client_for(world.bob)
        body = text(client.get(run_url(run)))
        for needle in ("Cancel run", "Resume", "Run again", "Approve</button>", "Deny</button>"):
            assert needle not in body, needle
        assert body.count('<form method="post"') == 1  # signing out is the only one
        forged = [
            (run_url(run), {"op": "cancel"}),
            (run_url(run), {"op": "resume"}),
            (run_url(run), {"op": "rerun", **start_data()}),
            (approval_url(approval), decide_data(approval, "approve")),
        ]
        for url, data in forged:
            assert client.post(url, data).status_code == 403, data
        run.refresh_from_db()
        approval.refresh_from_db()
        assert (run.status, approval.status) == ("waiting", "pending")
        assert Run.objects.for_tenant(world.acme).count() == 1
        assert tenant_events(world.acme, "permission.denied").count() == len(forged)

    def test_operator_may_cancel_but_not_decide_an_admin_approval(self, world, run):
        make_waiting(run)
        body = text(client_for(world.oscar).get(run_url(run)))
        assert 'value="cancel"' in body
        assert "Your role (operator) cannot decide it." in body
        assert "Approve</button>" not in body

    def test_admin_decides_the_runs_approval_on_its_page(self, world, run):
        approval = make_waiting(run)
        client = client_for(world.adam)
        body = text(client.get(run_url(run)))
        form = body.split('class="decide"')[1].split("</form>")[0]
        assert f'action="/t/acme/approvals/{approval.pk}/"' in body
        assert f'name="next" value="/t/acme/runs/{run.pk}/"' in form
        response = client.post(
            approval_url(approval),
            decide_data(approval, "approve", "ok", next=f"/t/acme/runs/{run.pk}/"),
        )
        assert response.status_code == 302
        assert response["Location"] == f"/t/acme/runs/{run.pk}/"
        approval.refresh_from_db()
        assert (approval.status, approval.decided_by, approval.comment) == (
            "approved",
            world.adam,
            "ok",
        )
        run.refresh_from_db()
        assert run.status == "running"
        steps = dict(
            StepRun.objects.for_tenant(world.acme).filter(run=run).values_list("step_key", "status")
        )
        assert steps == {"check": "succeeded", "triage": "queued"}


# approvals ---------------------------------------------------------------------------------


class TestApprovals:
    @pytest.fixture
    def approval(self, world):
        return make_waiting(start_run(world.acme, acme_workflow(world)))

    def test_approve_resumes_the_run_and_is_audited(self, world, approval):
        client = client_for(world.alice)
        response = client.post(approval_url(approval), decide_data(approval, "approve", "fine"))
        assert response.status_code == 302
        assert response["Location"] == approval_url(approval)
        approval.refresh_from_db()
        assert (approval.status, approval.decided_by, approval.comment) == (
            "approved",
            world.alice,
            "fine",
        )
        step = StepRun.objects.for_tenant(world.acme).get(pk=approval.step_run_id)
        assert step.status == "succeeded"
        assert step.output == {"approved": True, "comment": "fine", "decided_by": "alice"}
        event = acme_audit("approval.approved").get()
        assert (event.actor_user_id, event.after["comment"]) == (world.alice.pk, "fine")
        page = client.get(approval_url(approval))
        assert (
            f"Approved: “Refund 120 EUR to Dana Scully?”. Run #{approval.run_id} continues."
            in messages_of(page)
        )
        assert "Approved by alice" in text(page)
        assert "Approve</button>" not in text(page)

    def test_an_answer_given_as_json_text_is_shown_as_json(self, world):
        run = start_run(world.acme, acme_workflow(world))
        answer = '{"results": [{"title": "Refund policy", "score": 0.9}]}'
        approval = make_waiting(run)
        ApprovalRequest.objects.for_tenant(world.acme).filter(pk=approval.pk).update(
            details={"agent_output": answer}
        )
        body = text(client_for(world.alice).get(approval_url(approval)))
        details = body.split('class="approval-details">')[1].split("</pre>")[0]
        assert "\\&quot;" not in details  # no escaped quotes
        assert "&quot;results&quot;: [" in details
        assert "&quot;score&quot;: 0.9" in details

    def test_deny_asks_for_confirmation_and_fails_the_step(self, world, approval):
        client = client_for(world.alice)
        body = text(client.get(approval_url(approval)))
        assert 'data-confirm="Deny “Refund 120 EUR to Dana Scully?”? The waiting step fails' in body
        response = client.post(approval_url(approval), decide_data(approval, "deny", "too much"))
        assert response.status_code == 302
        approval.refresh_from_db()
        assert approval.status == "denied"
        step = StepRun.objects.for_tenant(world.acme).get(pk=approval.step_run_id)
        assert step.status == "failed"
        assert step.error["message"] == "alice denied: too much"
        run = Run.objects.for_tenant(world.acme).get(pk=approval.run_id)
        assert run.status == "failed"
        assert acme_audit("approval.denied").exists()
        shown = messages_of(client.get(approval_url(approval)))
        assert f"Run #{approval.run_id} takes the denial (its step fails)." in " ".join(shown)

    def test_already_decided_is_reported_and_changes_nothing(self, world, approval):
        access = resolve_access(user=world.adam, tenant_slug="acme")
        with context.using(tenant=world.acme, user=world.adam):
            approval_decide(approval=approval, approve=False, user=world.adam, access=access)
        response = client_for(world.alice).post(
            approval_url(approval), decide_data(approval, "approve"), follow=True
        )
        assert (
            "Nothing changed: “Refund 120 EUR to Dana Scully?” was already denied by adam."
            in messages_of(response)
        )
        approval.refresh_from_db()
        assert (approval.status, approval.decided_by) == ("denied", world.adam)
        assert not acme_audit("approval.approved").exists()

    def test_a_role_that_cannot_decide_gets_a_clear_403(self, world, approval):
        client = client_for(world.oscar)
        page = text(client.get(approval_url(approval)))
        assert "Waiting for a person with the <strong>admin</strong> role or higher." in page
        response = client.post(approval_url(approval), decide_data(approval, "approve"))
        assert response.status_code == 403
        assert "Deciding this request needs the admin role or higher; you are operator." in text(
            response
        )
        denial = tenant_events(world.acme, "permission.denied").get()
        assert denial.metadata["permission"] == "runs.decide_approvalrequest"
        assert denial.target_id == str(approval.pk)
        approval.refresh_from_db()
        assert approval.status == "pending"

    def test_operator_decides_what_operators_may_decide(self, world):
        approval = make_waiting(
            start_run(world.acme, acme_workflow(world)), required_role="operator"
        )
        client = client_for(world.oscar)
        assert "Approve</button>" in text(client.get("/t/acme/approvals/"))
        response = client.post(approval_url(approval), decide_data(approval, "approve"))
        assert response.status_code == 302
        approval.refresh_from_db()
        assert (approval.status, approval.decided_by) == ("approved", world.oscar)

    def test_a_missing_decision_is_a_form_error(self, world, approval):
        response = client_for(world.alice).post(
            approval_url(approval), {f"approval-{approval.pk}-comment": "hm"}
        )
        assert response.status_code == 400
        assert "Nothing was decided." in text(response)
        approval.refresh_from_db()
        assert approval.status == "pending"

    def test_next_must_stay_inside_the_tenant(self, world, approval):
        response = client_for(world.alice).post(
            approval_url(approval),
            decide_data(approval, "approve", next="https://evil.example/t/acme/"),
        )
        assert response["Location"] == approval_url(approval)

    def test_inbox_lists_pending_first_and_filters(self, world, approval):
        run = start_run(world.acme, acme_workflow_2(world))
        older_pending = approval
        decided = make_waiting(run)
        client = client_for(world.alice)
        client.post(approval_url(decided), decide_data(decided, "deny", "no"))
        newest = make_waiting(start_run(world.acme, acme_workflow_2(world, "third")))
        body = text(client.get("/t/acme/approvals/"))
        order = [
            int(n)
            for n in re.findall(r'<article class="card approval[^"]*" id="approval-(\d+)"', body)
        ]
        assert order == [newest.pk, older_pending.pk, decided.pk]
        assert "2 pending requests wait for your decision." in body
        assert body.count("Approve</button>") == 2
        assert "Denied by alice" in body and "“no”" in body
        denied = text(client.get("/t/acme/approvals/", {"status": "denied"}))
        assert re.findall(r'id="approval-(\d+)"', denied) == [str(decided.pk)]
        by_kind = text(client.get("/t/acme/approvals/", {"kind": "input"}))
        assert "No requests match these filters." in by_kind

    def test_nav_counts_the_pending_requests_the_member_may_decide(self, world, approval):
        make_waiting(start_run(world.acme, acme_workflow_2(world)), required_role="operator")
        count = r'id="nav-approvals-count">(\d+)<span class="sr-only"> waiting for you</span>'
        assert re.search(count, text(client_for(world.alice).get("/t/acme/")))[1] == "2"
        assert re.search(count, text(client_for(world.oscar).get("/t/acme/")))[1] == "1"
        assert not re.search(count, text(client_for(world.bob).get("/t/acme/")))
        assert 'href="/t/acme/approvals/"' in text(client_for(world.bob).get("/t/acme/"))

    def test_empty_inbox_says_what_happens_next(self, world):
        body = text(client_for(world.bob).get("/t/acme/approvals/"))
        assert "No approval requests yet." in body
        assert 'href="/t/acme/runs/">follow the runs</a>' in body


def acme_workflow_2(world, slug: str = "second") -> Workflow:
    return make_workflow(world.acme, slug=slug)


class TestHumanAnswer:
    """A human agent's request (kind "input"): the answer form comes from its schema."""

    schema = {
        "type": "object",
        "required": ["approved"],
        "properties": {
            "approved": {"type": "boolean", "title": "Approved"},
            "amount": {"type": "integer", "minimum": 0, "maximum": 500, "title": "Amount"},
        },
    }

    def test_answer_form_from_the_response_schema(self, world):
        approval = make_waiting(
            start_run(world.acme, acme_workflow(world)),
            kind="input",
            response_schema=self.schema,
        )
        client = client_for(world.alice)
        body = text(client.get(approval_url(approval)))
        prefix = f"approval-{approval.pk}-response"
        assert f'type="checkbox" name="{prefix}-approved"' in body
        assert f'type="number" name="{prefix}-amount"' in body
        assert "Send answer</button>" in body
        bad = client.post(
            approval_url(approval), decide_data(approval, "approve", **{f"{prefix}-amount": "900"})
        )
        assert bad.status_code == 400
        assert field_errors(text(bad), f"{prefix}-amount") == [
            "Ensure this value is less than or equal to 500."
        ]
        good = client.post(
            approval_url(approval),
            decide_data(
                approval, "approve", **{f"{prefix}-approved": "on", f"{prefix}-amount": "40"}
            ),
        )
        assert good.status_code == 302
        approval.refresh_from_db()
        assert approval.response == {"approved": True, "amount": 40}
        step = StepRun.objects.for_tenant(world.acme).get(pk=approval.step_run_id)
        assert step.output == {"approved": True, "amount": 40}

    def test_complex_answer_schema_is_json_with_errors_from_the_service(self, world):
        schema = {
            "type": "object",
            "required": ["lines"],
            "properties": {"lines": {"type": "array", "items": {"type": "string"}}},
        }
        approval = make_waiting(
            start_run(world.acme, acme_workflow(world)), kind="input", response_schema=schema
        )
        client = client_for(world.alice)
        name = f"approval-{approval.pk}-response-json"
        wrong = client.post(
            approval_url(approval), decide_data(approval, "approve", **{name: '{"lines": [3]}'})
        )
        assert wrong.status_code == 400
        assert field_errors(text(wrong), name) == ["response.lines.0: 3 is not of type 'string'"]
        approval.refresh_from_db()
        assert approval.status == "pending"


def test_workflows_runs_and_approvals_are_in_the_navigation(world):
    run = start_run(world.acme, acme_workflow(world))
    body = text(client_for(world.bob).get(run_url(run)))
    nav = body.split('<nav aria-label="Tenant sections" class="sections">')[1].split("</nav>")[0]
    links = re.findall(r'<a href="([^"]+)"', nav)
    assert links[7:10] == ["/t/acme/workflows/", "/t/acme/runs/", "/t/acme/approvals/"]
    # inside a run, the Runs section is current (the page itself is the breadcrumb's)
    assert '<a href="/t/acme/runs/" aria-current="true">Runs</a>' in nav
    assert 'aria-current="page"' not in nav
