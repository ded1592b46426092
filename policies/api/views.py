from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.api.base import TenantReadOnlyViewSet
from policies import services
from policies.api.serializers import ApprovalDecisionSerializer, ApprovalSerializer
from policies.filtersets import ApprovalFilterSet
from policies.models import ApprovalRequest


class ApprovalViewSet(TenantReadOnlyViewSet):
    """Requests waiting for a person: approval steps, human agents, escalations."""

    model = ApprovalRequest
    serializer_class = ApprovalSerializer
    filterset_class = ApprovalFilterSet
    ordering = "-id"
    action_permissions = {"decide": "policies.view_approvalrequest"}

    def refine_queryset(self, queryset):
        return queryset.select_related("step_run", "decided_by")

    @extend_schema(request=ApprovalDecisionSerializer, responses=ApprovalSerializer)
    @action(detail=True, methods=["post"])
    def decide(self, request, *args, **kwargs):
        """Approve or deny (the first decision wins); the waiting run continues."""
        approval = self.get_object()
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
        return Response(ApprovalSerializer(approval).data)
