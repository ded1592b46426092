"""Workflow pages: list, create, one workflow (graph, versions, publish), start a run."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import redirect

from agents.choices import AgentKind
from agents.models import Agent
from controlplane.choices import Status
from controlplane.dashboard.entity_pages import (
    EntityCreatePage,
    EntityDetailPage,
    EntityListPage,
    EntityObjectPage,
    EntityPages,
)
from controlplane.dashboard.pages import next_number, operation, pretty, totals_by, versions_of
from runs import diagram, services, workflow_services
from runs.filtersets import WorkflowFilterSet
from runs.forms import (
    RAW_JSON,
    RAW_PARAM,
    RunStartForm,
    WorkflowCreateForm,
    WorkflowPublishForm,
    definition_example,
)
from runs.models import Run, Workflow, WorkflowVersion
from runs.presenters import step_graph
from runs.selectors import with_finished_steps

VERSIONS_SHOWN = 50
RECENT_RUNS = 10

WORKFLOW_PAGES = EntityPages(
    model=Workflow,
    noun="Workflow",
    plural="workflows",
    url_name="workflow",
    object_kwarg="workflow",
    create=workflow_services.workflow_create,
    update=workflow_services.workflow_update,
    select_related=("current_version", "current_version__created_by"),
)


def run_rows(runs: Any) -> list[dict[str, Any]]:
    """Rows of a table of runs: each run and how many steps its definition has."""
    return [{"run": r, "total": len(r.definition.get("steps", []))} for r in runs]


class WorkflowListPage(EntityListPage):
    entity = WORKFLOW_PAGES
    template_name = "runs/workflow_list.html"
    filterset_class = WorkflowFilterSet
    ordering = ("slug",)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        workflows = list(data["objects"])
        counts = totals_by(Run.objects.filter(workflow__in=workflows), "workflow_id", Count("id"))
        data["rows"] = [
            {
                "workflow": w,
                "steps": len(
                    (w.current_version.definition if w.current_version else {}).get("steps", [])
                ),
                "runs": counts.get(w.pk, 0),
            }
            for w in workflows
        ]
        data["can_start"] = self.can("runs.add_run") and self.can("runs.run_workflow")
        return data


class WorkflowCreatePage(EntityCreatePage):
    entity = WORKFLOW_PAGES
    template_name = "runs/workflow_create.html"
    form_class = WorkflowCreateForm
    records_creator = True
    success_message = "{label} created as v1."

    def get_form_kwargs(self) -> dict[str, Any]:
        agent = (
            Agent.objects.filter(status=Status.ACTIVE, kind=AgentKind.LLM).order_by("slug").first()
        )
        return {"initial": {"definition": definition_example(agent.slug if agent else None)}}


class WorkflowPageMixin:
    """A page about one workflow, with the "Start a run" form of its current version."""

    entity = WORKFLOW_PAGES
    context_object_name = "workflow"

    def can_start(self) -> bool:
        workflow = self.object
        return (
            workflow.status == Status.ACTIVE
            and workflow.current_version is not None
            and self.can("runs.add_run")
            and self.can("runs.run_workflow", workflow)
        )

    def start_form(self, data=None) -> RunStartForm:
        definition = self.object.current_version.definition if self.object.current_version else {}
        # the person may type the input as JSON instead of the generated fields
        raw = (data if data is not None else self.request.GET).get(RAW_PARAM) == RAW_JSON
        return RunStartForm(
            data,
            schema=definition.get("input_schema") or {},
            example=definition.get("example_input"),
            idempotency_key=f"dashboard-{uuid.uuid4().hex}",
            raw=raw,
        )

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        workflow = self.object
        data["current"] = workflow.current_version
        data["can_start"] = self.can_start()
        if data["can_start"]:
            data["start_form"] = kwargs.get("start_form") or self.start_form()
            schema = workflow.current_version.definition.get("input_schema") or {}
            data["input_schema_json"] = pretty(schema)
        return data


class WorkflowDetailPage(WorkflowPageMixin, EntityDetailPage):
    template_name = "runs/workflow_detail.html"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        workflow = self.object
        current = workflow.current_version
        definition = current.definition if current else {}
        versions = versions_of(workflow, WorkflowVersion, limit=VERSIONS_SHOWN)
        recent = with_finished_steps(
            Run.objects.filter(workflow=workflow).select_related(
                "workflow", "workflow_version", "agent", "created_by"
            )
        ).order_by("-id")[:RECENT_RUNS]
        graph = step_graph(definition)
        data.update(
            definition_json=pretty(definition),
            graph=graph,
            diagram=diagram.layout(graph),
            versions=[{"version": v, "definition": pretty(v.definition)} for v in versions],
            next_number=next_number(versions),
            recent_runs=run_rows(recent),
            publish_form=kwargs.get("publish_form")
            or WorkflowPublishForm(initial={"definition": definition}),
        )
        return data

    @operation("publish")
    def publish(self, workflow: Workflow) -> HttpResponse:
        def publish(data: dict[str, Any]) -> HttpResponse:
            version = workflow_services.workflow_publish(
                workflow=workflow, **data, created_by=self.request.user
            )
            return self.done(f"Published v{version.number}; new runs use it.", "versions")

        return self.submit(WorkflowPublishForm(self.request.POST), publish, as_="publish_form")


class WorkflowStartPage(WorkflowPageMixin, EntityObjectPage):
    """Start a run from the form generated from the current version's input schema."""

    template_name = "runs/workflow_start.html"
    route = "start"
    permission_required = "runs.add_run"
    post_permission_required = "runs.add_run"

    def get(self, request, *args, **kwargs):
        self.require("runs.run_workflow", self.object)
        return super().get(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        workflow = self.object
        self.require("runs.run_workflow", workflow)
        if not self.can_start():
            messages.error(request, f"Workflow “{workflow.slug}” is disabled: enable it first.")
            return redirect(self.url("workflow-detail", slug=workflow.slug))
        form = self.start_form(request.POST)
        if not form.is_valid():
            return self.invalid(start_form=form)
        try:
            run, created = services.run_start(
                tenant=self.tenant,
                input=form.value(),
                workflow=workflow,
                created_by=request.user,
                idempotency_key=form.idempotency_key,
            )
        except services.IdempotencyKeyReused as exc:
            run, created = exc.run, False
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.invalid(start_form=form)
        if not created:  # the same form sent twice: one run
            messages.info(request, f"This form was already sent: it started run #{run.pk}.")
        else:
            messages.success(
                request,
                f"Run #{run.pk} of {workflow.slug} v{run.workflow_version.number} started.",
            )
        return redirect(self.url("run-detail", pk=run.pk))
