"""Approval requests: created by approval steps, human agents, escalations (and later policies);
decided exactly once; deciding resumes the waiting step."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from controlplane import context
from controlplane.audit.services import audit_record
from controlplane.rbac.roles import ROLE_RANK
from policies.choices import ApprovalKind, ApprovalStatus
from policies.models import ApprovalRequest


@transaction.atomic
def approval_create(
    *,
    run: Any,
    step_run: Any,
    kind: str,
    title: str,
    details: dict | None = None,
    required_role: str = "admin",
    response_schema: dict | None = None,
    expires_at: Any = None,
    on_timeout: str = "deny",
) -> ApprovalRequest:
    """Open a request a person must decide; audited.

    Idempotent per waiting step: if the step already has a pending request (its worker
    died after creating it, and the step ran again), that request is returned.
    """
    if step_run is not None:
        existing = (
            ApprovalRequest.objects.for_tenant(run.tenant_id)
            .filter(step_run=step_run, kind=kind, status=ApprovalStatus.PENDING)
            .first()
        )
        if existing is not None:
            return existing
    approval = ApprovalRequest.objects.for_tenant(run.tenant_id).create(
        tenant_id=run.tenant_id,
        run=run,
        step_run=step_run,
        kind=kind,
        title=title[:300],
        details=details or {},
        required_role=required_role,
        response_schema=response_schema,
        expires_at=expires_at,
        on_timeout=on_timeout,
    )
    with context.tenant_context(run.tenant):
        audit_record(
            action="approval.create",
            target=approval,
            tenant=run.tenant,
            after={
                "kind": kind,
                "title": approval.title,
                "run": run.pk,
                "step": step_run.step_key if step_run else None,
            },
        )
    return approval


def can_decide(*, access: Any, approval: ApprovalRequest) -> bool:
    """The member's role reaches the request's required role (or a guardian grant, later)."""
    required = ROLE_RANK.get(approval.required_role, ROLE_RANK["admin"])
    return ROLE_RANK.get(access.role, -1) >= required


@transaction.atomic
def approval_decide(
    *,
    approval: ApprovalRequest,
    approve: bool,
    user: Any,
    access: Any,
    comment: str = "",
    response: Any = None,
) -> ApprovalRequest:
    """Approve or deny; the first decision wins (a conditional UPDATE from pending).

    For a human-agent request (kind "input") an approval carries ``response``, validated
    against the request's schema. The waiting step finishes and the run continues.
    """
    from runs.engine.calls import StepFailure
    from runs.engine.runner import resolve_waiting_step

    if access is not None and not can_decide(access=access, approval=approval):
        raise PermissionDenied(f"Deciding this request needs the {approval.required_role} role.")
    if approve and approval.kind == ApprovalKind.INPUT and approval.response_schema:
        errors = sorted(
            Draft202012Validator(approval.response_schema).iter_errors(response),
            key=lambda e: list(e.absolute_path),
        )
        if errors:
            raise ValidationError(
                {
                    "response": [
                        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                        for e in errors
                    ]
                }
            )
    status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
    won = (
        ApprovalRequest.objects.for_tenant(approval.tenant_id)
        .filter(pk=approval.pk, status=ApprovalStatus.PENDING)
        .update(
            status=status,
            decided_by=user,
            decided_at=timezone.now(),
            comment=comment,
            response=response,
        )
    )
    if won != 1:
        approval.refresh_from_db()
        raise ValidationError({"status": f"This request was already {approval.status}."})
    approval.refresh_from_db()
    audit_record(
        action=f"approval.{status}",
        target=approval,
        tenant=approval.run.tenant,
        after={"status": status, "comment": comment[:500]},
    )
    step = approval.step_run
    if step is not None:
        decided_by = user.get_username() if user else "system"
        if approve:
            if approval.kind == ApprovalKind.APPROVAL:
                output = {"approved": True, "comment": comment, "decided_by": decided_by}
            else:
                output = response
            resolve_waiting_step(step=step, output=output)
        else:
            resolve_waiting_step(
                step=step,
                failure=StepFailure(
                    f"{decided_by} denied: {comment or approval.title}", code="denied"
                ),
            )
    return approval


def approvals_cancel_for_run(*, run: Any) -> int:
    """Pending requests of a run that ended are cancelled (nobody can decide them any more)."""
    return (
        ApprovalRequest.objects.for_tenant(run.tenant_id)
        .filter(run=run, status=ApprovalStatus.PENDING)
        .update(status=ApprovalStatus.CANCELLED, decided_at=timezone.now())
    )


def approvals_expire(now: Any = None) -> int:
    """Apply ``on_timeout`` to requests past ``expires_at`` (called by the sweeper)."""
    now = now or timezone.now()
    count = 0
    for approval in (
        ApprovalRequest.objects.unscoped()
        .filter(status=ApprovalStatus.PENDING, expires_at__lt=now)
        .select_related("run", "run__tenant")[:500]
    ):
        with (
            transaction.atomic(),
            context.system_context("approval-expiry", tenant=approval.run.tenant),
        ):
            try:
                approval_decide(
                    approval=approval,
                    approve=approval.on_timeout == "approve",
                    user=None,
                    access=None,
                    comment="expired",
                )
            except ValidationError:
                continue
            ApprovalRequest.objects.unscoped().filter(pk=approval.pk).update(
                status=ApprovalStatus.EXPIRED
            )
            count += 1
    return count
