"""Reads of approval requests shared by the inbox, a run's page, the API and the navigation."""

from __future__ import annotations

from typing import Any

from django.db.models import Case, IntegerField, Q, QuerySet, Value, When

from controlplane.rbac.grants import objects_granted
from controlplane.rbac.roles import ROLE_RANK
from policies.models import Policy
from runs.approvals.choices import ApprovalStatus
from runs.approvals.models import ApprovalRequest
from runs.models import Workflow


def decidable_by(access: Any) -> Q:
    """Requests whose required role the member's role reaches (as ``services.can_decide``).

    An unknown required role counts as admin, exactly as ``can_decide`` treats it.
    """
    rank = ROLE_RANK.get(access.role, -1)
    reachable = [role for role, needed in ROLE_RANK.items() if needed <= rank]
    condition = Q(required_role__in=reachable)
    if rank >= ROLE_RANK["admin"]:
        condition |= ~Q(required_role__in=list(ROLE_RANK))
    return condition


def pending_for(access: Any) -> QuerySet[ApprovalRequest]:
    """Pending requests of the member's tenant that they may decide (as ``can_decide``): by
    role, or by a guardian "approve" grant on the asking policy or on the run's workflow."""
    condition = decidable_by(access)
    if access.token_scope != "read" and getattr(access.user, "is_authenticated", False):
        policies = objects_granted(
            access.user, "policies.approve_policy", Policy.objects.for_tenant(access.tenant)
        )
        workflows = objects_granted(
            access.user, "runs.approve_workflow", Workflow.objects.for_tenant(access.tenant)
        )
        condition |= Q(policy__in=policies.values("pk")) | Q(
            run__workflow__in=workflows.values("pk")
        )
    return ApprovalRequest.objects.for_tenant(access.tenant).filter(
        condition, status=ApprovalStatus.PENDING
    )


def inbox(queryset: QuerySet[ApprovalRequest]) -> QuerySet[ApprovalRequest]:
    """Pending requests first, then decided ones; newest first within each."""
    pending = Case(
        When(status=ApprovalStatus.PENDING, then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    )
    return queryset.select_related("run", "run__workflow", "step_run", "decided_by").order_by(
        pending, "-id"
    )
