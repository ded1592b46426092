"""Run pages: the list, and one run (steps, timeline, progress; cancel, resume, rerun)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.template.response import TemplateResponse

from controlplane.choices import Status
from controlplane.dashboard.entity_pages import EntityListPage, EntityObjectPage, EntityPages
from controlplane.dashboard.pages import (
    KeysFirstPaginator,
    OperationsMixin,
    int_or_zero,
    operation,
    pretty,
)
from runs import services
from runs.approvals.models import ApprovalRequest
from runs.approvals.presenters import approval_cards
from runs.choices import RunStatus
from runs.filtersets import RunListFilterSet
from runs.forms import SchemaForm
from runs.models import Run, RunEvent, StepRun, Workflow
from runs.pins import VERSION_CHOICES, pinned_versions
from runs.presenters import ACTIVE_RUN_STATUSES, event_line, progress_of, step_rows
from runs.selectors import with_finished_steps
from runs.views.workflows import run_rows

TIMELINE_PAGE = 1000  # events on the page; the poller fetches the rest
TIMELINE_BATCH = 500  # events per poll
LIVE_SECONDS = 1

RUN_PAGES = EntityPages(
    model=Run,
    noun="Run",
    plural="runs",
    url_name="run",
    name_field="pk",
    lookup_field="pk",
    select_related=("workflow", "workflow_version", "agent", "created_by"),
)


def _say(exc: ValidationError) -> str:
    return " ".join(exc.messages)


class RunListPage(EntityListPage):
    entity = RUN_PAGES
    template_name = "runs/run_list.html"
    filterset_class = RunListFilterSet
    paginator_class = KeysFirstPaginator  # deep pages of 100,000 runs stay fast
    ordering = ("-id",)

    @property
    def add_permission(self) -> None:
        return None  # runs are started from a workflow's page

    def get_queryset(self):
        return with_finished_steps(super().get_queryset())

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["rows"] = run_rows(data["objects"])
        data["can_start"] = self.can("runs.add_run")
        data["has_workflows"] = Workflow.objects.filter(status=Status.ACTIVE).exists()
        return data


class RunDetailPage(OperationsMixin, EntityObjectPage):
    """A run: status, progress, steps, approvals and the timeline; live while it is active.

    A GET from htmx with ``after`` answers only what changed: the events after that
    sequence number (appended to the timeline) and, out of band, the run's state. No new
    event means nothing changed (204); once the run has ended and the client has every
    event, the answer is 286, which stops htmx polling.
    """

    entity = RUN_PAGES
    template_name = "runs/run_detail.html"
    actions = ("view", "cancel")

    def get_queryset(self):
        return super().get_queryset().select_related("rerun_of")

    def get(self, request, *args, **kwargs):
        if request.htmx and "after" in request.GET:
            return self.live(max(0, int_or_zero(request.GET["after"])))
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
            return self.refuse(f"Run #{run.pk} was not cancelled: {_say(exc)}")
        return self.done(f"Run #{run.pk} cancelled; running steps stop shortly.")

    @operation("resume", permission="runs.resume_run")
    def resume(self, run: Run) -> HttpResponse:
        try:
            resumed = services.run_resume(run=run)
        except ValidationError as exc:
            return self.refuse(f"Run #{run.pk} was not resumed: {_say(exc)}")
        return self.done(
            f"Run #{run.pk} resumed from its failed steps (resume {resumed.resume_count})."
        )

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
        return self.done(
            f"Run #{rerun.pk} started: #{run.pk} again, with {changed} and {which}.",
            to=self.url("run-detail", pk=rerun.pk),
        )
