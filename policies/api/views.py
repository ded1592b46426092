"""Policies API (versions, activation and rollback, mode, diff, simulation, approver grants),
and stored decisions. Views validate and call services."""

from __future__ import annotations

import dataclasses

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.api.base import (
    WITHOUT_PUT,
    SlugLookupMixin,
    TenantReadOnlyViewSet,
    TenantViewSet,
    definition_schema_view,
)
from controlplane.api.object_permissions import ObjectPermissionsMixin, PermissionHolderSerializer
from controlplane.api.versions import VersionDiffMixin, version_diff_schema
from policies import services
from policies.api.serializers import (
    PolicyActivateSerializer,
    PolicyCreateSerializer,
    PolicyDecisionSerializer,
    PolicyDetailSerializer,
    PolicyDiffSerializer,
    PolicyGrantSerializer,
    PolicyModeSerializer,
    PolicySerializer,
    PolicySimulateSerializer,
    PolicyUpdateSerializer,
    PolicyVersionCreateSerializer,
    PolicyVersionSerializer,
    SimulationResultSerializer,
)
from policies.filtersets import PolicyDecisionFilterSet, PolicyFilterSet
from policies.models import Policy, PolicyDecision, PolicyVersion
from policies.selectors import with_version_counts
from policies.simulation import simulate_version


def _policy_schema() -> dict:
    from policies.definition import SCHEMA

    return SCHEMA


policy_definition_schema = definition_schema_view("policy", _policy_schema)


GRANTS_DESCRIPTION = "Grant or revoke ``approve``: its holder may decide this policy's approvals."


@extend_schema_view(
    **version_diff_schema(
        noun="policy",
        version_serializer=PolicyVersionSerializer,
        diff_serializer=PolicyDiffSerializer,
        to_default="the active version (the newest when none is active)",
        diff_description=(
            "What changed between two versions; rules and rate limits are matched by their id."
        ),
    ),
    permissions=[
        extend_schema(
            methods=["GET"],
            responses=PermissionHolderSerializer(many=True),
            summary="Who holds per-policy grants (approve) on this policy",
            description=GRANTS_DESCRIPTION,
        ),
        extend_schema(
            methods=["POST"],
            request=PolicyGrantSerializer,
            responses={201: PermissionHolderSerializer(many=True)},
            description=GRANTS_DESCRIPTION,
        ),
        extend_schema(
            methods=["DELETE"],
            parameters=[
                OpenApiParameter("username", str, required=True),
                OpenApiParameter("permission", str, required=False, enum=["approve"]),
            ],
            responses={204: None},
            description=GRANTS_DESCRIPTION,
        ),
    ],
)
class PolicyViewSet(SlugLookupMixin, VersionDiffMixin, ObjectPermissionsMixin, TenantViewSet):
    """Policies and their immutable versions.

    A new version is a draft until activated; activating an older version rolls back.
    PATCH edits name, description, slug and mode.
    """

    model = Policy
    serializer_class = PolicySerializer
    filterset_class = PolicyFilterSet
    http_method_names = WITHOUT_PUT
    action_permissions = {
        "versions": "policies.view_policyversion",
        "create_version": "policies.add_policyversion",
        "version": "policies.view_policyversion",
        "diff": "policies.view_policyversion",
        "activate": "policies.change_policy",
        "mode": "policies.change_policy",
        # a replay of up to 5000 decisions is part of authoring, not reading
        "simulate": "policies.change_policy",
        # as agents and tools: handing out grants needs the role-level add permission
        "permissions": "policies.add_policy",
    }
    version_model = PolicyVersion
    version_serializer_class = PolicyVersionSerializer
    permission_grant_serializer_class = PolicyGrantSerializer

    def refine_queryset(self, queryset):
        return with_version_counts(queryset)

    def get_serializer_class(self):
        return PolicyDetailSerializer if self.action == "retrieve" else PolicySerializer

    def _detail(self, policy: Policy, code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=policy.pk)
        return Response(PolicyDetailSerializer(fresh).data, status=code)

    def _version(self, policy: Policy, number, field: str = "version") -> PolicyVersion:
        version = (
            PolicyVersion.objects.filter(policy=policy, number=number)
            .select_related("policy")
            .first()
        )
        if version is None:
            raise serializers.ValidationError({field: f"{policy.slug} has no version {number}."})
        return version

    @extend_schema(request=PolicyCreateSerializer, responses={201: PolicyDetailSerializer})
    def create(self, request, *args, **kwargs):
        data = self.validated(PolicyCreateSerializer)
        policy = services.policy_create(tenant=self.tenant, created_by=request.user, **data)
        return self._detail(policy, status.HTTP_201_CREATED)

    @extend_schema(request=PolicyUpdateSerializer, responses=PolicyDetailSerializer)
    def partial_update(self, request, *args, **kwargs):
        policy = self.get_object()
        data = self.validated(PolicyUpdateSerializer)
        policy = services.policy_update(policy=policy, **data)
        return self._detail(policy)

    def update(self, request, *args, **kwargs):
        if not kwargs.get("partial"):
            return self.http_method_not_allowed(request)
        return super().update(request, *args, **kwargs)

    def perform_destroy(self, instance):
        services.policy_delete(policy=instance)

    def diff_default_to(self, policy: Policy) -> int | None:
        default_to = policy.active_version.number if policy.active_version_id else None
        return default_to or policy.latest_version

    def diff_changes(self, older: PolicyVersion, newer: PolicyVersion) -> list[dict]:
        return services.policy_version_diff(older, newer)

    @extend_schema(methods=["GET"], responses=PolicyVersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request, *args, **kwargs):
        """Every version of the policy, newest first, each marked active, draft or previous."""
        policy = self.get_object()
        versions = self.version_queryset(policy).order_by("-number")
        return Response(PolicyVersionSerializer(versions, many=True).data)

    @extend_schema(
        methods=["POST"],
        request=PolicyVersionCreateSerializer,
        responses={201: PolicyVersionSerializer},
    )
    @versions.mapping.post
    def create_version(self, request, *args, **kwargs):
        """Validate and store a new version as a draft: nothing changes until it is activated."""
        policy = self.get_object()
        data = self.validated(PolicyVersionCreateSerializer)
        version = services.policy_save_version(policy=policy, created_by=request.user, **data)
        return Response(PolicyVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PolicyActivateSerializer, responses=PolicyDetailSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request, *args, **kwargs):
        """Apply a version: a newer draft, or an older version to roll back to."""
        policy = self.get_object()
        data = self.validated(PolicyActivateSerializer)
        version = self._version(policy, data["version"])
        policy = services.policy_activate(policy=policy, version=version)
        return self._detail(policy)

    @extend_schema(request=PolicyModeSerializer, responses=PolicyDetailSerializer)
    @action(detail=True, methods=["post"])
    def mode(self, request, *args, **kwargs):
        """Switch between enforce and log_only (log_only records, never changes an outcome)."""
        policy = self.get_object()
        data = self.validated(PolicyModeSerializer)
        policy = services.policy_set_mode(policy=policy, mode=data["mode"])
        return self._detail(policy)

    @extend_schema(request=PolicySimulateSerializer, responses=SimulationResultSerializer)
    @action(detail=True, methods=["post"])
    def simulate(self, request, *args, **kwargs):
        """Replay recorded decisions under a version (usually a draft): what would change.

        Nothing is written: the result compares the applied policies with the same set where
        this policy runs the given version (in ``mode``, default its current mode).
        """
        policy = self.get_object()
        data = self.validated(PolicySimulateSerializer)
        version = self._version(policy, data["version"])
        result = simulate_version(
            policy=policy, version=version, limit=data["limit"], mode=data.get("mode")
        )
        return Response(dataclasses.asdict(result))


class PolicyDecisionViewSet(TenantReadOnlyViewSet):
    """Every answer of the decision point, newest first, with the rule and the inputs."""

    model = PolicyDecision
    serializer_class = PolicyDecisionSerializer
    filterset_class = PolicyDecisionFilterSet
    lookup_value_regex = r"\d+"
    ordering = "-id"

    def refine_queryset(self, queryset):
        return queryset.select_related("policy", "policy_version", "would_policy")
