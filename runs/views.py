"""Dashboard pages of workflows and runs: workflows (graph, versions, publish, start a run)
and runs (list, detail with steps, timeline and progress, cancel, resume, rerun).

Pages mirror the runs API and share its services: forms parse, ``runs.services`` validate
and write, and ``TenantPageMixin`` enforces the tenant and each method's permission (a
page about one object looks it up inside the tenant first, so another tenant's object is
a 404). An action needing more than the page's POST permission checks it with
``require``, audited like the base. While a run is active its page follows it over a
websocket (``runs.consumers``, ``static/js/live.js``), refreshing its state block with
``?state``; without websockets it polls itself with htmx (``?after=<seq>``) and receives
only the events after the last one it shows.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from agents.choices import AgentKind
from agents.models import Agent
from controlplane.choices import Status
from controlplane.dashboard.pages import (
    FormPage,
    KeysFirstPaginator,
    OperationsMixin,
    TenantListPage,
    TenantObjectPage,
    operation,
    pretty,
)
from runs import diagram, services, workflow_services
from runs.approvals.models import ApprovalRequest
from runs.approvals.presenters import approval_cards
from runs.choices import RunStatus
from runs.filtersets import RunListFilterSet, WorkflowFilterSet
from runs.forms import (
    RAW_JSON,
    RAW_PARAM,
    RunStartForm,
    SchemaForm,
    WorkflowCreateForm,
    WorkflowPublishForm,
    definition_example,
)
from runs.models import Run, RunEvent, StepRun, Workflow, WorkflowVersion
from runs.pins import VERSION_CHOICES, pinned_versions
from runs.presenters import ACTIVE_RUN_STATUSES, event_line, progress_of, step_graph, step_rows
from runs.selectors import with_finished_steps

TIMELINE_PAGE = 1000  # events on the page; the poller fetches the rest
TIMELINE_BATCH = 500  # events per poll
VERSIONS_SHOWN = 50
RECENT_RUNS = 10
LIVE_SECONDS = 1


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


# workflows ---------------------------------------------------------------------------------


class WorkflowListPage(TenantListPage):
    template_name = "runs/workflow_list.html"
    permission_required = "runs.view_workflow"
    nav_section = "workflows"
    model = Workflow
    filterset_class = WorkflowFilterSet
    add_permission = "runs.add_workflow"

    def get_queryset(self):
        return Workflow.objects.select_related("current_version").order_by("slug")

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        workflows = list(data["objects"])
        counts = dict(
            Run.objects.filter(workflow__in=workflows)
            .order_by()
            .values("workflow_id")
            .annotate(n=Count("id"))
            .values_list("workflow_id", "n")
        )
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
        data["has_any"] = data["filtered"] or Workflow.objects.exists()
        data["can_start"] = self.can("runs.add_run") and self.can("runs.run_workflow")
        return data


class WorkflowCreatePage(FormPage):
    template_name = "runs/workflow_create.html"
    permission_required = "runs.add_workflow"
    post_permission_required = "runs.add_workflow"
    nav_section = "workflows"

    def get_form(self, data=None):
        agent = (
            Agent.objects.filter(status=Status.ACTIVE, kind=AgentKind.LLM).order_by("slug").first()
        )
        return WorkflowCreateForm(
            data, initial={"definition": definition_example(agent.slug if agent else None)}
        )

    def save(self, form):
        data = form.cleaned_data
        workflow = workflow_services.workflow_create(
            tenant=self.tenant,
            slug=data["slug"],
            name=data["name"],
            definition=data["definition"],
            description=data["description"],
            tags=data["tags"],
            note=data["note"],
            created_by=self.request.user,
        )
        messages.success(self.request, f"Workflow “{workflow.slug}” created as v1.")
        return redirect(self.url("workflow-detail", slug=workflow.slug))


class WorkflowPage(TenantObjectPage):
    """A page about one workflow, with the "Start a run" form of its current version."""

    model = Workflow
    nav_section = "workflows"

    def get_queryset(self):
        return Workflow.objects.select_related("current_version", "current_version__created_by")

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
        data["workflow"] = workflow
        data["current"] = workflow.current_version
        data["can_start"] = self.can_start()
        if data["can_start"]:
            data["start_form"] = kwargs.get("start_form") or self.start_form()
            schema = workflow.current_version.definition.get("input_schema") or {}
            data["input_schema_json"] = pretty(schema)
        return data


class WorkflowDetailPage(WorkflowPage):
    template_name = "runs/workflow_detail.html"
    permission_required = "runs.view_workflow"
    post_permission_required = "runs.change_workflow"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        workflow = self.object
        current = workflow.current_version
        definition = current.definition if current else {}
        versions = list(
            WorkflowVersion.objects.filter(workflow=workflow)
            .select_related("created_by")
            .order_by("-number")[:VERSIONS_SHOWN]
        )
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
            next_number=(versions[0].number + 1) if versions else 1,
            recent_runs=[{"run": r, "total": len(r.definition.get("steps", []))} for r in recent],
            publish_form=kwargs.get("publish_form")
            or WorkflowPublishForm(initial={"definition": definition}),
        )
        return data

    def post(self, request, *args, **kwargs):
        op = request.POST.get("op", "")
        workflow = self.object
        if op in ("disable", "enable"):
            return self.set_status(
                workflow_services.workflow_update, f"Workflow “{workflow.slug}”", workflow=workflow
            )
        if op != "publish":
            messages.error(request, "Unknown action.")
            return redirect(request.path)
        form = WorkflowPublishForm(request.POST)
        if not form.is_valid():
            return self.invalid(publish_form=form)
        try:
            version = workflow_services.workflow_publish(
                workflow=workflow,
                definition=form.cleaned_data["definition"],
                note=form.cleaned_data["note"],
                created_by=request.user,
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.invalid(publish_form=form)
        messages.success(request, f"Published v{version.number}; new runs use it.")
        return redirect(f"{request.path}#versions")


class WorkflowStartPage(WorkflowPage):
    """Start a run from the form generated from the current version's input schema."""

    template_name = "runs/workflow_start.html"
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
            return redirect(self.url("run-detail", pk=run.pk))
        messages.success(
            request, f"Run #{run.pk} of {workflow.slug} v{run.workflow_version.number} started."
        )
        return redirect(self.url("run-detail", pk=run.pk))


# runs --------------------------------------------------------------------------------------


class RunListPage(TenantListPage):
    template_name = "runs/run_list.html"
    permission_required = "runs.view_run"
    nav_section = "runs"
    model = Run
    filterset_class = RunListFilterSet
    paginator_class = KeysFirstPaginator  # deep pages of 100,000 runs stay fast

    def get_queryset(self):
        return with_finished_steps(
            Run.objects.select_related("workflow", "workflow_version", "agent", "created_by")
        ).order_by("-id")

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["rows"] = [
            {"run": r, "total": len(r.definition.get("steps", []))} for r in data["objects"]
        ]
        data["has_any"] = data["filtered"] or Run.objects.exists()
        data["can_start"] = self.can("runs.add_run")
        data["has_workflows"] = Workflow.objects.filter(status=Status.ACTIVE).exists()
        return data


class RunDetailPage(OperationsMixin, TenantObjectPage):
    """A run: status, progress, steps, approvals and the timeline; live while it is active.

    A GET from htmx with ``after`` answers only what changed: the events after that
    sequence number (appended to the timeline) and, out of band, the run's state. No new
    event means nothing changed (204); once the run has ended and the client has every
    event, the answer is 286, which stops htmx polling.
    """

    template_name = "runs/run_detail.html"
    permission_required = "runs.view_run"
    post_permission_required = "runs.cancel_run"
    nav_section = "runs"
    model = Run
    lookup_field = "pk"

    def get_queryset(self):
        return Run.objects.select_related(
            "workflow", "workflow_version", "agent", "created_by", "rerun_of"
        )

    def get(self, request, *args, **kwargs):
        if request.htmx and "after" in request.GET:
            return self.live(_int(request.GET["after"]))
        if request.htmx and "state" in request.GET:  # static/js/live.js: the state block alone
            return TemplateResponse(
                request, "runs/_run_state.html", self.state_context(self.object)
            )
        return super().get(request, *args, **kwargs)

    # what the page shows ---------------------------------------------------------------------

    def state_context(self, run: Run) -> dict[str, Any]:
        """The part of the page that changes while the run goes: refreshed as one block."""
        steps = list(
            StepRun.objects.filter(run=run).select_related("agent_version", "agent_version__agent")
        )
        approvals = list(
            ApprovalRequest.objects.filter(run=run)
            .select_related("decided_by", "step_run")
            .order_by("id")
        )
        active = run.status in ACTIVE_RUN_STATUSES
        return {
            "tenant": self.tenant,
            "access": self.access,
            "run": run,
            "active": active,
            "rows": step_rows(run.definition, steps),
            "progress": progress_of(run.definition, steps),
            "approvals": approval_cards(approvals, self.access, next_url=self.request.path),
            "can_cancel": active and self.can("runs.cancel_run"),
            "can_resume": run.status in (RunStatus.FAILED, RunStatus.TIMED_OUT)
            and self.can("runs.resume_run"),
            "live_seconds": LIVE_SECONDS,
        }

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        run = self.object
        events = list(RunEvent.objects.filter(run=run).order_by("seq")[:TIMELINE_PAGE])
        can_rerun = self.can("runs.resume_run")
        data.update(self.state_context(run))
        data.update(
            lines=[event_line(e) for e in events],
            after=events[-1].seq if events else 0,
            more_events=max(0, run.event_seq - TIMELINE_PAGE)
            if len(events) == TIMELINE_PAGE
            else 0,
            input_json=pretty(run.input),
            output_json=pretty(run.output) if run.output is not None else "",
            can_rerun=can_rerun,
            subject=run.workflow.slug if run.workflow else (run.agent.slug if run.agent else ""),
            agent_versions=pinned_versions(run),
        )
        if can_rerun:
            data["rerun_form"] = kwargs.get("rerun_form") or self.rerun_form()
            data["rerun_versions"] = kwargs.get("rerun_versions", "same")
            data["rerun_versions_error"] = kwargs.get("rerun_versions_error", "")
        return data

    def live(self, after: int) -> HttpResponse:
        run = self.object
        events = list(
            RunEvent.objects.filter(run=run, seq__gt=after).order_by("seq")[:TIMELINE_BATCH]
        )
        ended = run.status not in ACTIVE_RUN_STATUSES
        if not events and not ended:
            return HttpResponse(status=204)
        last = events[-1].seq if events else after
        response = TemplateResponse(
            self.request,
            "runs/_run_live.html",
            {
                **self.state_context(run),
                "lines": [event_line(e) for e in events],
                "after": last,
            },
        )
        # 286: htmx stops polling; the run ended and the page has every event
        response.status_code = 286 if ended and last >= run.event_seq else 200
        return response

    def rerun_form(self, data=None) -> SchemaForm:
        run = self.object
        return SchemaForm(
            data, schema=run.definition.get("input_schema") or {}, example=run.input, prefix="input"
        )

    # actions ---------------------------------------------------------------------------------

    @operation("cancel")
    def cancel(self, run: Run) -> HttpResponse:
        try:
            services.run_cancel(run=run, reason=f"cancelled by {self.request.user.get_username()}")
        except ValidationError as exc:
            messages.error(self.request, f"Run #{run.pk} was not cancelled: {_say(exc)}")
            return redirect(self.request.path)
        messages.success(self.request, f"Run #{run.pk} cancelled; running steps stop shortly.")
        return redirect(self.request.path)

    @operation("resume", permission="runs.resume_run")
    def resume(self, run: Run) -> HttpResponse:
        try:
            resumed = services.run_resume(run=run)
        except ValidationError as exc:
            messages.error(self.request, f"Run #{run.pk} was not resumed: {_say(exc)}")
            return redirect(self.request.path)
        messages.success(
            self.request,
            f"Run #{run.pk} resumed from its failed steps (resume {resumed.resume_count}).",
        )
        return redirect(self.request.path)

    @operation("rerun", permission="runs.resume_run")
    def rerun(self, run: Run) -> HttpResponse:
        form = self.rerun_form(self.request.POST)
        versions = self.request.POST.get("versions") or "same"
        if versions not in VERSION_CHOICES:
            return self.invalid(
                rerun_form=form,
                rerun_versions_error="Choose the same agent versions or the current ones.",
            )
        if not form.is_valid():
            return self.invalid(rerun_form=form, rerun_versions=versions)
        value = form.value()
        try:
            rerun = services.run_rerun(
                run=run,
                input=None if value == run.input else value,
                created_by=self.request.user,
                versions=versions,
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.invalid(rerun_form=form, rerun_versions=versions)
        changed = "the same input" if value == run.input else "edited input"
        which = "the same agent versions" if versions == "same" else "current agent versions"
        messages.success(
            self.request, f"Run #{rerun.pk} started: #{run.pk} again, with {changed} and {which}."
        )
        return redirect(self.url("run-detail", pk=rerun.pk))


def _say(exc: ValidationError) -> str:
    return " ".join(exc.messages)
