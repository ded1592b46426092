"""Workflows with immutable versions, runs, their steps and their gapless event streams."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from controlplane.model_bases import ImmutableVersion, ManagedObject, version_meta
from controlplane.tenancy.managers import TenantScopedModel
from runs.choices import RunStatus, StepStatus


class Workflow(ManagedObject):
    """A named orchestration; what it does lives in its immutable versions."""

    current_version = models.ForeignKey(
        "WorkflowVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(ManagedObject.Meta):
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="workflow_unique_slug"),
        ]
        permissions = [
            ("run_workflow", "Start runs of the workflow"),
            ("approve_workflow", "Decide approvals of the workflow's runs"),
        ]


class WorkflowVersion(ImmutableVersion):
    """One immutable, validated definition of a workflow; runs pin the version they started on."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    definition = models.JSONField()

    Meta = version_meta("workflow")

    def __str__(self) -> str:
        return f"{self.workflow.slug} v{self.number}"


class Run(TenantScopedModel):
    """One execution of a workflow version (or of a single agent).

    ``definition`` is the exact definition executed (copied from the version, or
    synthesised for a single-agent run), so a run is reproducible after edits.
    ``agent_versions`` pins, when the run starts, the version of every agent the definition
    names (``{slug: AgentVersion id}``): a later step runs the version pinned, not the one
    published since; a resume keeps the pins, a rerun chooses same or current versions.
    ``event_seq`` is the last RunEvent number: events are gapless per run.
    """

    workflow = models.ForeignKey(
        Workflow, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    workflow_version = models.ForeignKey(
        WorkflowVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    definition = models.JSONField()
    agent_versions = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    status_reason = models.TextField(blank=True)
    input = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    context = models.JSONField(default=dict, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    step_count = models.PositiveIntegerField(default=0)
    max_steps = models.PositiveIntegerField(default=200)
    deadline = models.DateTimeField(null=True, blank=True)
    event_seq = models.BigIntegerField(default=0)
    idempotency_key = models.CharField(max_length=200, blank=True)
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resume_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="run_unique_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "-id"], name="run_tenant_status"),
            models.Index(fields=["tenant", "-id"], name="run_tenant_recent"),
            # the overview's window: PostgreSQL aggregates from the index alone
            models.Index(
                fields=["tenant", "created_at"],
                include=[
                    "status",
                    "started_at",
                    "finished_at",
                    "cost_usd",
                    "input_tokens",
                    "output_tokens",
                ],
                name="run_tenant_created",
            ),
        ]
        permissions = [("cancel_run", "Cancel runs"), ("resume_run", "Resume and rerun runs")]

    def __str__(self) -> str:
        return f"run {self.pk}"


class StepRun(TenantScopedModel):
    """One step of a run: the unit of work a worker claims (the outbox of the engine).

    Claimed by a conditional UPDATE (queued -> running) that must touch exactly one row;
    ``claim_token`` changes on every claim so a worker whose lease was taken over cannot
    write its result. ``state`` keeps partial progress (e.g. finished parallel branches)
    that a retry reuses.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    step_key = models.CharField(max_length=50)
    step_type = models.CharField(max_length=16)
    position = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=StepStatus.choices, default=StepStatus.QUEUED, db_index=True
    )
    attempt = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=1)
    delivery_count = models.PositiveIntegerField(default=0)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    state = models.JSONField(default=dict, blank=True)
    route = models.CharField(max_length=100, blank=True)
    tolerated = models.BooleanField(default=False)
    agent_version = models.ForeignKey(
        "agents.AgentVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    claim_token = models.CharField(max_length=32, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_key"], name="steprun_unique_key"),
        ]
        indexes = [
            models.Index(fields=["status", "updated_at"], name="steprun_sweep"),
            # the overview's failing agents: failed steps are few
            models.Index(
                fields=["tenant", "created_at"],
                condition=models.Q(status="failed"),
                name="steprun_failed_recent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.step_key}"

    @property
    def idempotency_prefix(self) -> str:
        """Stable across retries of this step: tool calls append their call index."""
        return f"run-{self.run_id}-step-{self.step_key}"


class RunEvent(TenantScopedModel):
    """Append-only event of a run with a gapless per-run ``seq`` (the live timeline)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField()
    type = models.CharField(max_length=50)
    step_key = models.CharField(max_length=50, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="runevent_unique_seq"),
        ]
        indexes = [
            # the overview's failing tools: tool calls that answered an error
            models.Index(
                fields=["tenant", "created_at"],
                condition=models.Q(type="tool.call", payload__has_key="error"),
                name="runevent_tool_errors",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.type}"


class AgentMemory(TenantScopedModel):
    """Long-term key/value memory of one agent across runs (read and written by its tools)."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    value = models.JSONField(null=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["agent", "key"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "key"], name="agentmemory_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id}:{self.key}"


# The approvals' models live in their own package; importing them here registers them.
from runs.approvals.models import ApprovalRequest, ApprovalVote  # noqa: E402, F401
