"""Reads shared by the approvals pages and the navigation."""

from __future__ import annotations

from typing import Any

from django.db.models import Case, IntegerField, Q, QuerySet, Value, When

from controlplane.rbac.roles import ROLE_RANK
from policies.definition import KnownNames
from runs.approvals.choices import ApprovalStatus
from runs.approvals.models import ApprovalRequest


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
        from controlplane.rbac.grants import objects_granted
        from policies.models import Policy
        from runs.models import Workflow

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


def with_version_counts(queryset: QuerySet) -> QuerySet:
    """Policies with ``versions_count`` and ``latest_version`` (the newest number) annotated,
    and their applied version loaded."""
    from django.db.models import Count, OuterRef, Subquery

    from policies.models import PolicyVersion

    # correlated to the outer (tenant-scoped) policy row, so it needs no tenant of its own
    versions = PolicyVersion.objects.unscoped().filter(policy=OuterRef("pk")).order_by()
    count = versions.values("policy").annotate(n=Count("pk")).values("n")
    latest = versions.order_by("-number").values("number")[:1]
    return queryset.select_related("active_version").annotate(
        versions_count=Subquery(count, output_field=IntegerField()),
        latest_version=Subquery(latest, output_field=IntegerField()),
    )


def known_names(tenant: Any) -> KnownNames:
    """The agent and tool slugs and model names a policy of ``tenant`` may name, whatever
    their status (a disabled tool may be enabled again): tools include the engine's
    context_get/context_set/memory_get/memory_set; models from the providers' model lists
    and from every agent version's configuration."""
    from agents.choices import BUILTIN_TOOL_RISKS
    from agents.models import Agent, AgentVersion, ProviderConnection, Tool

    models: set[str] = set()
    for listed in ProviderConnection.objects.for_tenant(tenant).values_list("models", flat=True):
        models.update(m["name"] for m in listed or () if isinstance(m, dict) and m.get("name"))
    configured = AgentVersion.objects.for_tenant(tenant).values_list("config__model", flat=True)
    models.update(m for m in configured.distinct() if isinstance(m, str) and m)
    return KnownNames(
        agents=frozenset(Agent.objects.for_tenant(tenant).values_list("slug", flat=True)),
        tools=frozenset(Tool.objects.for_tenant(tenant).values_list("slug", flat=True))
        | frozenset(BUILTIN_TOOL_RISKS),  # the engine's context and memory tools
        models=frozenset(models),
    )
