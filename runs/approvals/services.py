"""Approval requests: created by approval steps, human agents, escalations and policies;
decided exactly once, with an optional quorum; deciding resumes the waiting step.

``runs.execution`` creates and cancels requests through this module, so the execution
functions used here (``lock_run``, resuming a waiting step) are imported where they are called.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from controlplane import context
from controlplane.audit.services import audit_record
from controlplane.rbac.grants import has_object_perm
from controlplane.rbac.roles import ROLE_RANK
from controlplane.realtime.events import publish_tenant_event
from runs.approvals.choices import ApprovalKind, ApprovalStatus
from runs.approvals.models import ApprovalRequest, ApprovalVote
from runs.execution.outcomes import StepFailure


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
    policy: Any = None,
    rule: str = "",
    inputs_hash: str = "",
    required_approvals: int = 1,
) -> ApprovalRequest:
    """Open a request a person must decide; audited.

    Idempotent per waiting step (and, for policy requests, per call): if the step already
    has a pending request (its worker died after creating it, and the step ran again),
    that request is returned.
    """
    from runs.execution.transitions import lock_run  # runs.execution imports this module

    lock_run(run.pk)  # the run's row before the request's and the audit chain's: see lock_run
    if step_run is not None:
        existing = ApprovalRequest.objects.for_tenant(run.tenant_id).filter(
            step_run=step_run, kind=kind, status=ApprovalStatus.PENDING
        )
        if inputs_hash:
            existing = existing.filter(inputs_hash=inputs_hash)
        found = existing.first()
        if found is not None:
            return found
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
        policy=policy,
        rule=rule[:100],
        inputs_hash=inputs_hash,
        required_approvals=max(1, required_approvals),
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
                "required_role": required_role,
                "quorum": approval.required_approvals,
                **({"policy": policy.slug, "rule": rule} if policy is not None else {}),
            },
        )
    _approvals_changed(run.tenant)
    return approval


def _approvals_changed(tenant: Any) -> None:
    """Tell the tenant's open pages, after commit, that the approvals waiting have changed.

    Only the fact travels: each page asks for its own member's count (it depends on roles).
    """
    publish_tenant_event(tenant=tenant, kind="approvals.changed", seq=0, data={})


def can_decide(*, access: Any, approval: ApprovalRequest) -> bool:
    """The member's role reaches the request's required role, or they hold a guardian
    "approve" grant on the policy that asked for it or on the run's workflow."""
    required = ROLE_RANK.get(approval.required_role, ROLE_RANK["admin"])
    if ROLE_RANK.get(access.role, -1) >= required:
        return True
    if access.token_scope == "read":
        return False
    user = access.user
    policy = approval.policy if approval.policy_id is not None else None
    if policy is not None and has_object_perm(user, "policies.approve_policy", policy):
        return True
    workflow = getattr(approval.run, "workflow", None)
    return workflow is not None and has_object_perm(user, "runs.approve_workflow", workflow)


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
    """Approve or deny; decided exactly once.

    The request row is locked while a vote is counted, so two people deciding at the same
    moment are serialised: a deny decides at once; an approval decides when the quorum
    (``required_approvals`` distinct people) is reached, earlier approvals are recorded
    as votes. The final transition is a conditional UPDATE from pending, so the waiting
    step is resumed exactly once. For a human-agent request (kind "input") an approval
    carries ``response``, validated against the request's schema.
    """
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
    from runs.execution.transitions import lock_run  # runs.execution imports this module

    # the run's row before the request's (deciding resumes the run): see lock_run
    run = lock_run(approval.run_id)
    locked = (
        ApprovalRequest.objects.for_tenant(approval.tenant_id)
        .select_for_update(of=("self",))
        .get(pk=approval.pk)
    )
    if locked.status != ApprovalStatus.PENDING:
        raise ValidationError({"status": f"This request was already {locked.status}."})
    if user is not None:
        if (
            ApprovalVote.objects.for_tenant(approval.tenant_id)
            .filter(approval=locked, user=user)
            .exists()
        ):
            raise ValidationError(
                {"status": "You already voted on this request; another approver must decide."}
            )
        ApprovalVote.objects.for_tenant(approval.tenant_id).create(
            tenant_id=approval.tenant_id,
            approval=locked,
            user=user,
            approve=approve,
            comment=comment,
        )
        if approve and locked.required_approvals > 1:
            votes = (
                ApprovalVote.objects.for_tenant(approval.tenant_id)
                .filter(approval=locked, approve=True)
                .count()
            )
            if votes < locked.required_approvals:
                audit_record(
                    action="approval.vote",
                    target=locked,
                    tenant=run.tenant,
                    after={
                        "approve": True,
                        "votes": votes,
                        "quorum": locked.required_approvals,
                        "comment": comment[:500],
                    },
                )
                return locked
    status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
    now = timezone.now()
    won = (
        ApprovalRequest.objects.for_tenant(approval.tenant_id)
        .filter(pk=approval.pk, status=ApprovalStatus.PENDING)
        .update(
            status=status,
            decided_by=user,
            decided_at=now,
            comment=comment,
            response=response,
        )
    )
    if won != 1:
        approval.refresh_from_db()
        raise ValidationError({"status": f"This request was already {approval.status}."})
    # the row is locked by this transaction: what the UPDATE wrote is what it holds now
    locked.status, locked.decided_by, locked.decided_at = status, user, now
    locked.comment, locked.response, locked.run = comment, response, run
    audit_record(
        action=f"approval.{status}",
        target=locked,
        tenant=run.tenant,
        after={"status": status, "comment": comment[:500]},
    )
    _approvals_changed(run.tenant)
    _resume(locked, approve, user, comment, response)
    return locked


def _resume(approval: ApprovalRequest, approve: bool, user: Any, comment: str, response: Any):
    from runs.execution.resume import requeue_waiting_step, resolve_waiting_step  # as lock_run

    step = approval.step_run
    if step is None:
        return
    if approval.kind == ApprovalKind.POLICY:
        # The step runs again; its policy check finds this decision and obeys it.
        requeue_waiting_step(step=step, reason=f"approval {approval.pk} {approval.status}")
        return
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
            failure=StepFailure(f"{decided_by} denied: {comment or approval.title}", code="denied"),
        )


def approvals_cancel_for_run(*, run: Any) -> int:
    """Pending requests of a run that ended are cancelled (nobody can decide them any more)."""
    cancelled = (
        ApprovalRequest.objects.for_tenant(run.tenant_id)
        .filter(run=run, status=ApprovalStatus.PENDING)
        .update(status=ApprovalStatus.CANCELLED, decided_at=timezone.now())
    )
    if cancelled:
        _approvals_changed(run.tenant)
    return cancelled


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
