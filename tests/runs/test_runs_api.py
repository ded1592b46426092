"""Generic endpoint tests for workflows, runs and approvals, plus their specific rules."""

from __future__ import annotations

from unittest import mock

import pytest

from controlplane import context
from controlplane.tenancy.choices import Role
from runs import services, workflow_services
from runs.approvals.models import ApprovalRequest
from runs.approvals.services import approval_create
from runs.execution import progress
from runs.models import Run, StepRun
from tests.agents.registry_factories import make_tool
from tests.api_mixins import TenantEndpointTests, assert_error_shape

DEFINITION = {
    "input_schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
    "example_input": {"n": 1},
    "steps": [
        {
            "id": "calc",
            "type": "tool",
            "tool": "calc",
            "arguments": {"expression": "{{ input.n }} + 1"},
        }
    ],
}


@pytest.fixture(autouse=True)
def _no_broker():
    # These tests check the API, not execution: keep runs queued, send nothing to Redis.
    with mock.patch.object(progress, "dispatch"):
        yield


def _workflow(tenant, slug=None):
    make_tool(tenant, slug="calc")
    with context.system_context("tests", tenant=tenant):
        return workflow_services.workflow_create(
            tenant=tenant, slug=slug or "wf", name="WF", definition=DEFINITION
        )


def _run(tenant):
    workflow = _workflow(tenant, slug=f"wf-{Run.objects.unscoped().count()}")
    with context.system_context("tests", tenant=tenant):
        run, _ = services.run_start(tenant=tenant, workflow=workflow, input={"n": 2})
        return run


class TestWorkflowsEndpoint(TenantEndpointTests):
    basename = "workflow"
    lookup_kwarg = "slug"
    read_role = Role.VIEWER
    write_role = Role.ADMIN
    supports_delete = False
    create_audit_action = "workflow.create"
    update_audit_action = "workflow.update"
    update_data = {"description": "Adds one"}
    invalid_create_data = {"slug": "x", "name": "X", "definition": {"steps": "nope"}}
    extra_routes = {
        "api:workflow-publish",
        "api:workflow-versions",
        "api:workflow-validate",
        "api:workflow-definition-schema",
    }

    def make_object(self, world, tenant):
        return _workflow(tenant, slug="made")

    def lookup(self, obj):
        return obj.slug

    def create_data(self, world):
        make_tool(world.acme, slug="calc")
        return {"slug": "adder", "name": "Adder", "definition": DEFINITION}


class TestRunsEndpoint(TenantEndpointTests):
    basename = "run"
    lookup_kwarg = "pk"
    read_role = Role.VIEWER
    write_role = Role.OPERATOR
    supports_update = False
    supports_delete = False
    create_audit_action = "run.start"
    invalid_create_data = {"workflow": "missing", "input": {}}
    extra_routes = {"api:run-cancel", "api:run-resume", "api:run-rerun", "api:run-events"}

    def make_object(self, world, tenant):
        return _run(tenant)

    def lookup(self, obj):
        return str(obj.pk)

    def create_data(self, world):
        _workflow(world.acme, slug="startable")
        return {"workflow": "startable", "input": {"n": 5}}


class TestApprovalsEndpoint(TenantEndpointTests):
    basename = "approval"
    lookup_kwarg = "pk"
    read_role = Role.VIEWER
    write_role = None
    extra_routes = {"api:approval-decide"}

    def make_object(self, world, tenant):
        run = _run(tenant)
        return approval_create(run=run, step_run=None, kind="approval", title="Go?")

    def lookup(self, obj):
        return str(obj.pk)


@pytest.mark.django_db
class TestWorkflowRules:
    def test_validation_reports_every_error_with_its_path(self, world, api):
        make_tool(world.acme, slug="calc")
        definition = {
            "input_schema": {"type": "object"},
            "example_input": {},
            "steps": [
                {"id": "a", "type": "agent", "agent": "ghost", "input": "{{ steps.later.output }}"},
                {"id": "b", "type": "tool", "tool": "calc", "needs": ["nope"]},
                {"id": "later", "type": "tool", "tool": "calc"},
            ],
        }
        client = api(world.alice, world.acme)
        body = assert_error_shape(
            client.post(
                "/api/v1/t/acme/workflows/",
                {"slug": "bad", "name": "Bad", "definition": definition},
                format="json",
            ),
            400,
        )
        attrs = {e["attr"] for e in body["errors"]}
        assert {"definition.steps[0].agent", "definition.steps[1].needs[0]"} <= attrs
        assert any(a and a.startswith("definition.steps[0].input") for a in attrs)
        checked = client.post(
            "/api/v1/t/acme/workflows/validate/", {"definition": definition}, format="json"
        ).json()
        assert checked["valid"] is False and len(checked["errors"]) >= 3

    def test_schema_is_published(self, client):
        schema = client.get("/api/v1/schemas/workflow-definition/").json()
        assert schema["type"] == "object" and "steps" in schema["properties"]

    def test_publish_new_version_keeps_running_runs_on_theirs(self, world, api):
        workflow = _workflow(world.acme)
        with context.system_context("tests", tenant=world.acme):
            run, _ = services.run_start(tenant=world.acme, workflow=workflow, input={"n": 1})
        client = api(world.alice, world.acme)
        changed = dict(
            DEFINITION,
            steps=[dict(DEFINITION["steps"][0], arguments={"expression": "{{ input.n }} * 10"})],
        )
        published = client.post(
            "/api/v1/t/acme/workflows/wf/publish/",
            {"definition": changed, "note": "times ten"},
            format="json",
        )
        assert published.status_code == 201 and published.json()["number"] == 2
        run.refresh_from_db()
        assert run.workflow_version.number == 1
        assert run.definition["steps"][0]["arguments"]["expression"] == "{{ input.n }} + 1"
        versions = client.get("/api/v1/t/acme/workflows/wf/versions/").json()
        assert [v["number"] for v in versions] == [2, 1]


@pytest.mark.django_db
class TestRunRules:
    def test_input_is_validated_against_the_schema(self, world, api):
        _workflow(world.acme)
        body = assert_error_shape(
            api(world.oscar, world.acme).post(
                "/api/v1/t/acme/runs/", {"workflow": "wf", "input": {"n": "one"}}, format="json"
            ),
            400,
        )
        assert "input.n" in {e["attr"] for e in body["errors"]}

    def test_start_creates_the_first_step_and_an_idempotency_key_dedupes(self, world, api):
        _workflow(world.acme)
        client = api(world.oscar, world.acme)
        first = client.post(
            "/api/v1/t/acme/runs/",
            {"workflow": "wf", "input": {"n": 1}},
            format="json",
            HTTP_IDEMPOTENCY_KEY="k1",
        )
        again = client.post(
            "/api/v1/t/acme/runs/",
            {"workflow": "wf", "input": {"n": 1}},
            format="json",
            HTTP_IDEMPOTENCY_KEY="k1",
        )
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        assert first.json()["status"] == "queued"
        assert [s["step"] for s in first.json()["steps"]] == ["calc"]

    def test_an_idempotency_key_reused_with_another_request_is_refused(self, world, api):
        _workflow(world.acme)
        client = api(world.oscar, world.acme)

        def start(body):
            return client.post(
                "/api/v1/t/acme/runs/", body, format="json", HTTP_IDEMPOTENCY_KEY="k2"
            )

        first = start({"workflow": "wf", "input": {"n": 1}})
        assert first.status_code == 201
        body = assert_error_shape(start({"workflow": "wf", "input": {"n": 2}}), 422)
        assert body["errors"][0]["code"] == "idempotency_key_reused"
        assert f"run {first.json()['id']}" in body["errors"][0]["detail"]
        assert Run.objects.for_tenant(world.acme).count() == 1
        assert start({"workflow": "wf", "input": {"n": 1}}).status_code == 200

    def test_single_agent_run(self, world, api):
        from tests.agents.registry_factories import make_agent

        make_agent(world.acme, slug="helper")
        response = api(world.oscar, world.acme).post(
            "/api/v1/t/acme/runs/", {"agent": "helper", "input": "hello"}, format="json"
        )
        assert response.status_code == 201
        assert response.json()["agent"] == "helper"

    def test_viewer_cannot_start_or_cancel(self, world, api):
        run = _run(world.acme)
        client = api(world.bob, world.acme)
        assert_error_shape(
            client.post("/api/v1/t/acme/runs/", {"workflow": "wf-0"}, format="json"), 403
        )
        assert_error_shape(client.post(f"/api/v1/t/acme/runs/{run.pk}/cancel/"), 403)

    def test_cancel_then_cannot_cancel_again(self, world, api):
        run = _run(world.acme)
        client = api(world.oscar, world.acme)
        assert client.post(f"/api/v1/t/acme/runs/{run.pk}/cancel/").json()["status"] == (
            "cancelled"
        )
        assert StepRun.objects.unscoped().get(run=run).status == "cancelled"
        assert_error_shape(client.post(f"/api/v1/t/acme/runs/{run.pk}/cancel/"), 400)
        assert_error_shape(client.post(f"/api/v1/t/acme/runs/{run.pk}/resume/"), 400)

    def test_filters(self, world, api):
        run = _run(world.acme)
        client = api(world.bob, world.acme)
        assert [
            r["id"] for r in client.get("/api/v1/t/acme/runs/?status=queued").json()["results"]
        ] == [run.pk]
        assert client.get("/api/v1/t/acme/runs/?status=succeeded").json()["results"] == []
        assert_error_shape(client.get("/api/v1/t/acme/runs/?status=sleeping"), 400)

    def test_events_have_their_own_filters_not_the_run_lists(self, world, api):
        run = _run(world.acme)
        client = api(world.bob, world.acme)
        url = f"/api/v1/t/acme/runs/{run.pk}/events/"
        every = client.get(url).json()
        assert {"run.created", "step.queued"} <= {e["type"] for e in every}
        # a run-list filter neither hides the run (it was a 404) nor filters the events
        assert client.get(f"{url}?status=failed").json() == every
        step_events = client.get(f"{url}?type=step.").json()
        assert step_events and {e["type"][:5] for e in step_events} == {"step."}
        assert [e["type"] for e in client.get(f"{url}?type=run.created").json()] == ["run.created"]
        assert {e["step"] for e in client.get(f"{url}?step=calc").json()} == {"calc"}
        assert client.get(f"{url}?step=other").json() == []
        last = every[-1]["seq"]
        assert client.get(f"{url}?after={last}").json() == []
        body = assert_error_shape(client.get(f"{url}?after=soon"), 400)
        assert {e["attr"] for e in body["errors"]} == {"after"}


@pytest.mark.django_db
class TestApprovalRules:
    def test_viewer_cannot_decide_and_first_decision_wins(self, world, api):
        run = _run(world.acme)
        approval = approval_create(run=run, step_run=None, kind="approval", title="Go?")
        url = f"/api/v1/t/acme/approvals/{approval.pk}/decide/"
        assert_error_shape(
            api(world.bob, world.acme).post(url, {"decision": "approve"}, format="json"), 403
        )
        ok = api(world.alice, world.acme).post(
            url, {"decision": "approve", "comment": "yes"}, format="json"
        )
        assert ok.status_code == 200 and ok.json()["status"] == "approved"
        late = api(world.adam, world.acme).post(url, {"decision": "deny"}, format="json")
        body = assert_error_shape(late, 400)
        assert "already approved" in body["errors"][0]["detail"]
        assert ApprovalRequest.objects.unscoped().get(pk=approval.pk).decided_by == world.alice


@pytest.mark.django_db
def test_a_step_rerun_after_a_crash_reuses_its_pending_approval(world):
    run = _run(world.acme)
    step = StepRun.objects.unscoped().get(run=run)
    first = approval_create(run=run, step_run=step, kind="approval", title="Go?")
    again = approval_create(run=run, step_run=step, kind="approval", title="Go?")
    assert first.pk == again.pk
    assert ApprovalRequest.objects.unscoped().filter(step_run=step).count() == 1
