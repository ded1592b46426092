from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from controlplane.api.base import TenantListCreateDestroyViewSet, TenantViewSet
from controlplane.tenancy import services
from controlplane.tenancy.api.serializers import (
    InvitationSerializer,
    MembershipCreateSerializer,
    MembershipSerializer,
    MembershipUpdateSerializer,
    TenantSerializer,
)
from controlplane.tenancy.filtersets import MembershipFilterSet
from controlplane.tenancy.models import Invitation, Membership, Tenant
from controlplane.tenancy.selectors import memberships_of


class MyTenantsView(generics.ListAPIView):
    """The tenants you belong to, with your role in each."""

    serializer_class = TenantSerializer
    permission_classes = [IsAuthenticated]
    pagination_class = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Tenant.objects.none()
        return Tenant.objects.filter(
            pk__in=memberships_of(self.request.user).values("tenant_id")
        ).order_by("slug")

    def get_serializer_context(self):
        ctx = super().get_serializer_context()
        ctx["roles"] = {m.tenant_id: m.role for m in memberships_of(self.request.user)}
        return ctx


class MembershipViewSet(TenantViewSet):
    """Members of the tenant and their roles. Owners and admins manage them."""

    model = Membership
    serializer_class = MembershipSerializer
    filterset_class = MembershipFilterSet
    lookup_field = "user__username"
    lookup_url_kwarg = "username"
    lookup_value_regex = r"[\w.@+-]+"
    ordering = "id"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def refine_queryset(self, queryset):
        return queryset.select_related("user")

    @extend_schema(
        request=MembershipCreateSerializer,
        responses={202: InvitationSerializer},
        description="Invite an account by name: the answer is the same whether or not such "
        "an account exists; it becomes a member when its holder accepts.",
    )
    def create(self, request, *args, **kwargs):
        serializer = MembershipCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation = services.membership_invite(
            tenant=self.tenant,
            username=serializer.validated_data["username"],
            role=serializer.validated_data["role"],
            actor_role=self.access.role,
            invited_by=request.user,
        )
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=MembershipUpdateSerializer, responses=MembershipSerializer)
    def partial_update(self, request, *args, **kwargs):
        membership = self.get_object()
        serializer = MembershipUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.membership_change_role(
            membership=membership,
            role=serializer.validated_data["role"],
            actor_role=self.access.role,
        )
        return Response(MembershipSerializer(membership).data)

    def perform_destroy(self, instance):
        services.membership_remove(membership=instance, actor_role=self.access.role)


class InvitationViewSet(TenantListCreateDestroyViewSet):
    """Pending invitations (made with ``POST members/``); DELETE withdraws one."""

    model = Invitation
    serializer_class = InvitationSerializer
    lookup_field = "username"
    lookup_value_regex = r"[\w.@+-]+"
    ordering = "username"
    http_method_names = ["get", "delete", "head", "options"]

    def refine_queryset(self, queryset):
        return queryset.select_related("invited_by").order_by("username")

    def perform_destroy(self, instance):
        services.invitation_cancel(invitation=instance, actor_role=self.access.role)
