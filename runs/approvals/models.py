"""Approval requests and the votes on them (models of the ``runs`` app, in their old tables)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from controlplane.tenancy.managers import TenantScopedModel
from runs.approvals.choices import ApprovalKind, ApprovalStatus


class ApprovalRequest(TenantScopedModel):
    """A question for a person that a run waits on: approve or deny, or answer (human agent).

    Decided exactly once: the decision is a conditional UPDATE from pending, so two
    people deciding at the same moment cannot both resume the run.
    """

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="+")
    step_run = models.ForeignKey(
        "runs.StepRun", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(
        max_length=16, choices=ApprovalKind.choices, default=ApprovalKind.APPROVAL
    )
    title = models.CharField(max_length=300)
    details = models.JSONField(default=dict, blank=True)
    response_schema = models.JSONField(null=True, blank=True)
    required_role = models.CharField(max_length=16, default="admin")
    status = models.CharField(
        max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING, db_index=True
    )
    response = models.JSONField(null=True, blank=True)
    comment = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    on_timeout = models.CharField(max_length=16, default="deny")
    policy = models.ForeignKey(
        "policies.Policy", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rule = models.CharField(max_length=100, blank=True)
    inputs_hash = models.CharField(max_length=64, blank=True)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    # the audit trail's name for requests from before they moved to runs (the chain is
    # append-only): one target type for the whole history
    audit_type = "policies.approvalrequest"

    class Meta:
        db_table = "policies_approvalrequest"  # its table from when it lived in policies
        ordering = ["-id"]
        indexes = [models.Index(fields=["tenant", "status", "-id"], name="approval_inbox")]
        permissions = [("decide_approvalrequest", "Decide approval requests")]

    def __str__(self) -> str:
        return self.title


class ApprovalVote(TenantScopedModel):
    """One person's approve or deny on a request; a quorum counts distinct approvers."""

    approval = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    approve = models.BooleanField()
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    audit_type = "policies.approvalvote"  # as ApprovalRequest.audit_type

    class Meta:
        db_table = "policies_approvalvote"  # its table from when it lived in policies
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["approval", "user"], name="approvalvote_one_per_user"),
        ]

    def __str__(self) -> str:
        return f"{'approve' if self.approve else 'deny'} by {self.user_id}"
