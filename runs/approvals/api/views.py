"""Approvals API: list and read requests, and decide one. Views validate and call services."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.api.base import TenantReadOnlyViewSet
from controlplane.rbac.denials import record_denial
from runs.approvals import services
from runs.approvals.api.serializers import ApprovalDecisionSerializer, ApprovalSerializer
from runs.approvals.filtersets import ApprovalFilterSet
from runs.approvals.models import ApprovalRequest, ApprovalVote

DECIDE_PERMISSION = "runs.decide_approvalrequest"  # named in the audit row of a refusal


class ApprovalViewSet(TenantReadOnlyViewSet):
    """Requests waiting for a person: approval steps, human agents, escalations, policies."""

    model = ApprovalRequest
    serializer_class = ApprovalSerializer
    filterset_class = ApprovalFilterSet
    ordering = "-id"
    # Seeing the request is enough to reach decide(); whether this member may decide this
    # request (role, or a guardian grant on its policy or workflow) is checked per request.
    action_permissions = {"decide": "runs.view_approvalrequest"}

    def refine_queryset(self, queryset):
        votes = ApprovalVote.objects.for_tenant(self.tenant).select_related("user")
        return queryset.select_related("step_run", "decided_by", "policy").prefetch_related(
            Prefetch("votes", queryset=votes)
        )

    @extend_schema(request=ApprovalDecisionSerializer, responses=ApprovalSerializer)
    @action(detail=True, methods=["post"])
    def decide(self, request, *args, **kwargs):
        """Approve or deny. A deny decides at once; approvals decide when
        ``required_approvals`` distinct people approved (until then the request stays
        pending and the vote is recorded). The waiting run continues exactly once."""
        approval = self.get_object()
        if self.access.token_scope == "read" or not services.can_decide(
            access=self.access, approval=approval
        ):
            record_denial(
                request=request, access=self.access, permission=DECIDE_PERMISSION, target=approval
            )
            if self.access.token_scope == "read":
                message = "A read-scope token cannot decide approvals."
            else:
                message = (
                    f"Deciding this request needs the {approval.required_role} role or higher, "
                    "or an approve grant on its policy or workflow; "
                    f"you are {self.access.role}."
                )
            self.permission_denied(request, message=message)
        serializer = ApprovalDecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        approval = services.approval_decide(
            approval=approval,
            approve=data["decision"] == "approve",
            user=request.user,
            access=self.access,
            comment=data.get("comment", ""),
            response=data.get("response"),
        )
        return Response(ApprovalSerializer(self.get_queryset().get(pk=approval.pk)).data)
