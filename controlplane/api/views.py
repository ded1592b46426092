from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from controlplane.api import services
from controlplane.api.base import TenantListCreateDestroyViewSet
from controlplane.api.filtersets import ApiTokenFilterSet
from controlplane.api.models import ApiToken
from controlplane.api.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
)


class ApiTokenViewSet(TenantListCreateDestroyViewSet):
    """API tokens of the tenant. Create returns the token once; DELETE revokes it."""

    model = ApiToken
    serializer_class = ApiTokenSerializer
    filterset_class = ApiTokenFilterSet
    lookup_field = "prefix"
    lookup_value_regex = r"[A-Za-z0-9]{8}"
    ordering = "-id"

    def refine_queryset(self, queryset):
        return queryset.select_related("user", "created_by")

    @extend_schema(request=ApiTokenCreateSerializer, responses={201: ApiTokenCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = ApiTokenCreateSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        issued = services.api_token_create(
            tenant=self.tenant,
            user=data.get("username") or request.user,
            name=data["name"],
            scope=data["scope"],
            expires_in_days=data.get("expires_in_days"),
            created_by=request.user,
        )
        body = ApiTokenCreatedSerializer(issued.token).data
        body["token"] = issued.plaintext
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    def perform_destroy(self, instance):
        services.api_token_revoke(token=instance)
