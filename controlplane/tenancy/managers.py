"""Tenant-scoped managers that fail closed.

``Model.objects`` on a tenant-scoped model only answers inside a tenant
context (``controlplane.context.tenant_context`` or a request handled by the
base views) and then only with that tenant's rows. Without a tenant it raises
instead of quietly returning every tenant's rows. ``.unscoped()`` is the one,
greppable, way around it; ``.for_tenant(t)`` scopes explicitly.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from controlplane import context


class TenantScopeError(RuntimeError):
    """A tenant-scoped model was queried with no tenant in context."""


class TenantQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Any) -> TenantQuerySet:
        return self.filter(tenant=tenant)


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):
    """Default manager of every tenant-scoped model (see module docstring)."""

    def get_queryset(self) -> TenantQuerySet:
        tenant = context.current_tenant()
        if tenant is None:
            raise TenantScopeError(
                f"{self.model.__name__} is tenant-scoped and no tenant is in context: "
                "use tenant_context(tenant), .for_tenant(tenant) or, deliberately, .unscoped()."
            )
        return super().get_queryset().filter(tenant=tenant)

    def unscoped(self) -> TenantQuerySet:
        """Every tenant's rows. Callers must filter themselves; keep each use reviewable."""
        return super().get_queryset()

    def for_tenant(self, tenant: Any) -> TenantQuerySet:
        return super().get_queryset().filter(tenant=tenant)

    def none(self) -> TenantQuerySet:
        # An empty queryset reveals nothing, so it needs no tenant (schema generation uses it).
        return super().get_queryset().none()


class TenantScopedModel(models.Model):
    """Abstract base of every model that belongs to one tenant."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")

    objects = TenantManager()

    class Meta:
        abstract = True
