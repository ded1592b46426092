"""Base viewsets for the tenant API. Subclasses declare; the base scopes and authorises.

Every view under ``/api/v1/t/<tenant>/`` derives from ``TenantViewSet`` (or
``TenantReadOnlyViewSet``). The base class

* resolves the tenant from the URL and the caller's membership (404 when not a member, or
  when an API token bound to another tenant is used),
* sets the tenant context for the request, so tenant-scoped managers answer,
* restricts ``get_queryset()`` to the tenant (a subclass declares ``model`` and may only
  narrow the queryset in ``refine_queryset``),
* requires the model permission of the action (``view``/``add``/``change``/``delete`` or
  ``action_permissions`` for custom actions); an action with no permission is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cached_property
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response

from controlplane import context
from controlplane.api.permissions import TenantPermission
from controlplane.rbac.access import Access, resolve_access

_DEFAULT_ACTION_VERBS = {
    "list": "view",
    "retrieve": "view",
    "create": "add",
    "update": "change",
    "partial_update": "change",
    "destroy": "delete",
    "metadata": "view",
}


class TenantScopedViewMixin:
    """Tenant resolution, context and permission enforcement for DRF views."""

    permission_classes = [IsAuthenticated, TenantPermission]
    # custom actions name their permission here, e.g. {"cancel": "runs.cancel_run"}
    action_permissions: dict[str, str] = {}
    # allow django-guardian object grants to satisfy object actions
    allow_object_grants = False
    tenant_url_kwarg = "tenant"
    # what to do instead of a method the resource does not route, e.g. {"DELETE": "..."}
    method_not_allowed_hints: dict[str, str] = {}
    model = None  # the tenant-scoped model served; subclasses must set it

    @cached_property
    def access(self) -> Access:
        access = resolve_access(
            user=self.request.user,
            tenant_slug=self.kwargs[self.tenant_url_kwarg],
            token=self.request.auth if _is_token(self.request.auth) else None,
        )
        ctx = dataclasses.replace(
            context.current(),
            tenant=access.tenant,
            user=self.request.user,
            token=self.request.auth if _is_token(self.request.auth) else None,
        )
        self._context_token = context.set_context(ctx)
        return access

    @property
    def tenant(self):
        return self.access.tenant

    def required_permission(self) -> str:
        if self.request.method.lower() not in self.http_method_names:
            # a method the resource does not route (nor document) is a 405 for every member,
            # before its permission is looked up: a permission nobody holds would make it 403
            self.http_method_not_allowed(self.request)
        action = getattr(self, "action", None) or self.request.method.lower()
        if action in self.action_permissions:
            return self.action_permissions[action]
        verb = _DEFAULT_ACTION_VERBS.get(action)
        if verb is None and not hasattr(self, self.request.method.lower()):
            # e.g. POST to a read-only resource: answer 405, not a configuration error (500)
            self.http_method_not_allowed(self.request)
        if verb is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__}.{action} has no permission: add it to action_permissions."
            )
        model = self.get_model()
        return f"{model._meta.app_label}.{verb}_{model._meta.model_name}"

    def http_method_not_allowed(self, request, *args, **kwargs):
        hint = self.method_not_allowed_hints.get(request.method)
        raise exceptions.MethodNotAllowed(request.method, detail=hint)

    def get_model(self):
        return self.model

    def validated(self, serializer_class: type, **kwargs: Any) -> Any:
        """The request body checked by ``serializer_class`` (400 with every problem if not)."""
        serializer = serializer_class(data=self.request.data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def is_object_action(self) -> bool:
        return self.lookup_url_kwarg in self.kwargs or self.lookup_field in self.kwargs

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no tenant
            return self.model.objects.unscoped().none()
        return self.refine_queryset(self.model.objects.for_tenant(self.access.tenant))

    def refine_queryset(self, queryset):
        """Add select_related, ordering or narrowing filters; never widen."""
        return queryset

    def get_serializer_context(self):
        ctx = super().get_serializer_context()
        if self.request and self.request.user.is_authenticated and "tenant" in self.kwargs:
            ctx["access"] = self.access
            ctx["tenant"] = self.access.tenant
        return ctx

    def finalize_response(self, request, response, *args, **kwargs):
        token = getattr(self, "_context_token", None)
        if token is not None:
            context.reset_context(token)
            self._context_token = None
        return super().finalize_response(request, response, *args, **kwargs)


def _is_token(auth) -> bool:
    from controlplane.api.models import ApiToken

    return isinstance(auth, ApiToken)


class TenantViewSet(TenantScopedViewMixin, viewsets.ModelViewSet):
    """Full CRUD base; subclasses route writes through services in perform_* hooks."""


# methods of a resource edited with PATCH only
WITHOUT_PUT = ["get", "post", "patch", "delete", "head", "options"]


class SlugLookupMixin:
    """Addressed and listed by the tenant-unique slug."""

    lookup_field = "slug"
    lookup_value_regex = r"[a-z0-9-]+"
    ordering = "slug"


class ServiceCreateMixin:
    """Create through the entity's ``create_service``, declared by the viewset.

    ``create_service(tenant=..., **validated)``: the serializer validates, the service writes
    and audits. ``create_fields`` names the validated fields the service takes when the
    serializer also has fields it does not (``status``: set by an edit, not at creation);
    ``records_creator`` passes the caller as ``created_by``.
    """

    create_service: Callable[..., Any]
    create_fields: tuple[str, ...] | None = None  # None: every validated field
    records_creator = False

    def perform_create(self, serializer):
        data = serializer.validated_data
        if self.create_fields is not None:
            data = {name: data[name] for name in self.create_fields if name in data}
        extra = {"created_by": self.request.user} if self.records_creator else {}
        serializer.instance = type(self).create_service(tenant=self.tenant, **data, **extra)


class ServiceWritesMixin(ServiceCreateMixin):
    """Create and update through the entity's services, declared by the viewset.

    Besides ``create_service``: ``update_service(<instance_kwarg>=obj, **validated)``.
    """

    update_service: Callable[..., Any]
    instance_kwarg = "obj"

    def perform_update(self, serializer):
        serializer.instance = type(self).update_service(
            **{self.instance_kwarg: serializer.instance}, **serializer.validated_data
        )


def definition_schema_view(noun: str, load: Callable[[], dict]) -> Callable:
    """A public GET endpoint answering the JSON Schema of ``noun`` definitions."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @api_view(["GET"])
    @permission_classes([AllowAny])
    def view(request):
        return Response(load())

    view.__doc__ = view.cls.__doc__ = (
        f"The JSON Schema of {noun} definitions (documentation for authors and editors)."
    )
    return view


class TenantReadOnlyViewSet(TenantScopedViewMixin, viewsets.ReadOnlyModelViewSet):
    """List and retrieve only."""


class TenantListCreateDestroyViewSet(
    TenantScopedViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """List, retrieve, create and delete (no update)."""
