"""An API action managing django-guardian grants on one object ("change" and "use" by default)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.rbac.grants import (
    CrossTenantGrant,
    object_permission_grant,
    object_permission_revoke,
    users_granted,
)


class PermissionGrantSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    permission = serializers.ChoiceField(choices=["change", "use"])


class PermissionHolderSerializer(serializers.Serializer):
    username = serializers.CharField()
    permissions = serializers.ListField(child=serializers.CharField())


class ObjectPermissionsMixin:
    """Adds ``GET/POST/DELETE .../<slug>/permissions/`` to a tenant viewset.

    Managing grants needs the role-level ``add`` permission of the model (owners and
    admins), so a per-object grant never lets its holder hand out more grants. A viewset
    granting other verbs names its own ``permission_grant_serializer_class`` (its
    ``permission`` field's choices) and re-documents the action with ``extend_schema_view``.
    """

    permission_grant_serializer_class: type[serializers.Serializer] = PermissionGrantSerializer

    def _perm(self, verb: str) -> str:
        meta = self.model._meta
        return f"{meta.app_label}.{verb}_{meta.model_name}"

    @extend_schema(
        methods=["GET"],
        responses=PermissionHolderSerializer(many=True),
        summary="Who holds per-object grants on this object",
    )
    @extend_schema(
        methods=["POST"],
        request=PermissionGrantSerializer,
        responses={201: PermissionHolderSerializer(many=True)},
    )
    @extend_schema(
        methods=["DELETE"],
        parameters=[
            OpenApiParameter("username", str, required=True),
            OpenApiParameter("permission", str, required=True, enum=["change", "use"]),
        ],
        responses={204: None},
    )
    @action(
        detail=True,
        methods=["get", "post", "delete"],
        url_path="permissions",
        pagination_class=None,
        # its own: registry viewsets route no DELETE on the object itself
        http_method_names=["get", "post", "delete", "head", "options"],
    )
    def permissions(self, request, *args, **kwargs):
        obj = self.get_object()
        if request.method == "GET":
            return Response(self._holders(obj))
        source = request.data if request.method == "POST" else request.query_params
        serializer = self.permission_grant_serializer_class(data=source)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["username"]
        perm = self._perm(serializer.validated_data["permission"])
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise serializers.ValidationError({"username": f"No user named {username!r}."})
        if request.method == "POST":
            try:
                object_permission_grant(user=user, perm=perm, obj=obj)
            except CrossTenantGrant:
                raise serializers.ValidationError(
                    {"username": f"{username} is not a member of this tenant."}
                ) from None
            return Response(self._holders(obj), status=status.HTTP_201_CREATED)
        object_permission_revoke(user=user, perm=perm, obj=obj)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _holders(self, obj) -> list[dict]:
        return [
            {"username": user.username, "permissions": sorted(perms)}
            for user, perms in sorted(users_granted(obj).items(), key=lambda i: i[0].username)
        ]
